"""Task 1.0-1.2 code from the notebook: data loading and its errors, augmentation, the network, the training loop."""
import urllib.error

import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
from conftest import N_TEST, TRAIN_PER_BATCH


def test_loads_standard_splits_with_torchvision(nb, tiny_cifar, offline_cifar):
    train_set, test_set = nb.load_cifar10(tiny_cifar, download=False)
    assert len(train_set) == 5 * TRAIN_PER_BATCH and len(test_set) == N_TEST
    images, labels = nb.dataset_tensors(train_set, torch.device("cpu"))
    assert images.shape == (5 * TRAIN_PER_BATCH, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.tolist() == train_set.targets
    # channel order: the tensor's channel 0 is the image's red plane
    assert torch.equal(images[0, 0], torch.from_numpy(train_set.data[0, :, :, 0]))


def test_missing_data_gives_one_clear_error(nb, tmp_path):
    with pytest.raises(nb.DataUnavailableError) as err:
        nb.load_cifar10(tmp_path / "nowhere", download=False)
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "DATA_DIR" in message and "cifar-10-python.tar.gz" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_failed_download_gives_the_same_clear_error(nb, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", no_network)
    with pytest.raises(nb.DataUnavailableError, match="could not be downloaded .*URLError.*no network"):
        nb.load_cifar10(tmp_path / "empty", download=True)


def test_split_is_disjoint_reproducible_and_checked(nb):
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 3, 32, 32)
    labels = torch.arange(100) % 10
    (tx, ty), (vx, vy) = nb.split_train_val(images, labels, 20, train_subset=50, seed=1)
    assert len(ty) == 50 and len(vy) == 20
    assert not set(tx[:, 0, 0, 0].tolist()) & set(vx[:, 0, 0, 0].tolist())
    (tx2, _), _ = nb.split_train_val(images, labels, 20, train_subset=50, seed=1)
    assert torch.equal(tx, tx2)
    with pytest.raises(ValueError, match="VAL_SIZE must be between 1 and 99"):
        nb.split_train_val(images, labels, 100)
    with pytest.raises(ValueError, match="TRAIN_SUBSET must be None or between 1 and 80"):
        nb.split_train_val(images, labels, 20, train_subset=81)


def test_augment_crops_and_flips_each_image(nb):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = nb.augment(images, padding=4)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flips = 0
    for i in range(len(images)):
        windows = [(padded[i, :, t:t + 32, l:l + 32], f) for t in range(9) for l in range(9) for f in (0, 1)]
        matches = [f for w, f in windows if torch.equal(out[i], w.flip(-1) if f else w)]
        assert matches, f"image {i} is not a flipped or unflipped crop of the padded input"
        flips += matches[0]
    assert 10 < flips < 54  # about half of the images are flipped
    assert not torch.equal(nb.augment(images), nb.augment(images))  # random each time


def test_network_layers_shapes_and_parameter_count(nb):
    model = nb.ConvNet()
    rows = nb.layer_summary(model)
    assert [(name, shape) for name, _, shape, _ in rows] == [
        ("conv1", (8, 28, 28)), ("relu1", (8, 28, 28)), ("pool1", (8, 14, 14)),
        ("conv2", (16, 10, 10)), ("relu2", (16, 10, 10)), ("pool2", (16, 5, 5)), ("flatten", (400,)),
        ("fc1", (128,)), ("relu3", (128,)), ("fc2", (64,)), ("relu4", (64,)), ("fc3", (10,))]
    assert sum(p.numel() for p in model.parameters()) == sum(row[3] for row in rows) == 64_058
    assert isinstance(model.conv1, torch.nn.Conv2d) and model.conv1.padding == (0, 0)
    assert isinstance(model.pool1, torch.nn.MaxPool2d) and model.pool1.kernel_size == 2
    assert model(torch.zeros(5, 3, 32, 32)).shape == (5, 10)


def test_fit_learns_the_fixture_and_is_reproducible(nb, tiny_cifar, offline_cifar):
    train_set, _ = nb.load_cifar10(tiny_cifar, download=False)
    images, labels = nb.dataset_tensors(train_set, torch.device("cpu"))
    train, val = nb.split_train_val(images, labels, 200)
    normalize = nb.make_normalize(*nb.channel_stats(train[0]))

    def run():
        nb.seed_everything(0)
        model = nb.ConvNet()
        return nb.fit(model, train, val, normalize, torch.nn.CrossEntropyLoss(label_smoothing=0.1), 3, 64, 0.05)

    history = run()
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_acc"][-1] > 0.3
    assert len(history["epoch_seconds"]) == 3
    assert run()["val_loss"] == history["val_loss"]  # same seed, same machine: same numbers


def test_pick_device(nb):
    assert nb.pick_device("cpu").type == "cpu"
    assert nb.pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="sees no CUDA GPU"):
            nb.pick_device("cuda")
