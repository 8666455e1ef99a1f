"""Task 1.0-1.2 code from the notebook: data loading and its errors, augmentation, the network, the training loop."""
import math
import shutil
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.utils as tv_utils
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
    assert f"CIFAR-10 is not complete in {tmp_path / 'nowhere' / 'cifar-10-batches-py'} (0 of its files there)" in message
    assert "DATA_DIR" in message and "cifar-10-python.tar.gz" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_failed_download_names_the_network(nb, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_utils, "download_url", no_network)
    with pytest.raises(nb.DataUnavailableError, match="could not be downloaded .*URLError.*no network.*Run with "
                                                      "internet access"):
        nb.load_cifar10(tmp_path / "empty", download=True)


def official_layout_with_other_files(tiny_cifar, folder):
    """The fixture's files where CIFAR-10's belong: right names, other md5 sums, as a damaged or foreign copy has."""
    shutil.copytree(tiny_cifar / "cifar-10-batches-py", folder / "cifar-10-batches-py")
    return folder / "cifar-10-batches-py"


def test_files_whose_checksums_differ_are_named_without_a_word_of_the_network(nb, tiny_cifar, tmp_path, monkeypatch):
    """torchvision finds the md5 sums wrong and tries to download; offline that fails with a URLError. The message
    names the files and says how to get the official ones, not that the network failed."""
    folder = official_layout_with_other_files(tiny_cifar, tmp_path)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_utils, "download_url", no_network)
    with pytest.raises(nb.DataUnavailableError) as err:
        nb.load_cifar10(tmp_path, download=True)
    message = str(err.value)
    assert message.startswith(f"{folder} holds files whose md5 sums differ from CIFAR-10's official ones")
    assert "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch" in message
    assert f"Delete {folder} and run again to download them, or download https://" in message
    assert "URLError" not in message and "network" not in message and "internet" not in message


def test_a_file_cut_short_is_named(nb, tiny_cifar, tmp_path, offline_cifar):
    """With the md5 check off (as the tests run), a file cut short fails when unpickled; the message still names it
    by its checksum."""
    folder = official_layout_with_other_files(tiny_cifar, tmp_path)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:1000])
    with pytest.raises(nb.DataUnavailableError, match="md5 sums differ .*data_batch_3"):
        nb.load_cifar10(tmp_path, download=True)


def test_present_files_are_checked_and_not_downloaded_again(nb, tiny_cifar, monkeypatch):
    """torchvision's CIFAR10 as it ships: with download=True and the files present, it checks their md5 sums and
    downloads nothing. No subclass, no override of a private method."""
    checked = []
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: checked.append(Path(path).name) or True)
    monkeypatch.setattr(tv_utils, "download_url", lambda *args, **kwargs: pytest.fail("downloaded"))
    train_set, test_set = nb.load_cifar10(tiny_cifar, download=True)
    assert type(train_set) is type(test_set) is tv_cifar.CIFAR10
    assert {"data_batch_1", "data_batch_5", "test_batch"} <= set(checked)


def test_download_is_extracted(nb, tiny_cifar, tmp_path, monkeypatch, offline_cifar):
    def from_local_archive(url, root, filename=None, md5=None, **kwargs):
        Path(root).mkdir(parents=True, exist_ok=True)
        with tarfile.open(Path(root) / filename, "w:gz") as tar:
            tar.add(tiny_cifar / "cifar-10-batches-py", arcname="cifar-10-batches-py")

    monkeypatch.setattr(tv_utils, "download_url", from_local_archive)
    train_set, test_set = nb.load_cifar10(tmp_path / "fresh", download=True)
    assert len(train_set) == 5 * TRAIN_PER_BATCH and len(test_set) == N_TEST
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_split_is_disjoint_and_reproducible(nb):
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 3, 32, 32)
    labels = torch.arange(100) % 10
    (tx, ty), (vx, vy) = nb.split_train_val(images, labels, 20, train_subset=50, seed=1)
    assert len(ty) == 50 and len(vy) == 20
    assert not set(tx[:, 0, 0, 0].tolist()) & set(vx[:, 0, 0, 0].tolist())
    (tx2, _), _ = nb.split_train_val(images, labels, 20, train_subset=50, seed=1)
    assert torch.equal(tx, tx2)
    (tx3, _), (vx3, _) = nb.split_train_val(images, labels, 20, train_subset=0, seed=1)
    assert len(tx3) == 80 and torch.equal(vx3, vx)  # 0: every image that is not held out; the same held out


def test_augment_crops_and_flips_each_image(nb):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = nb.augment(images, 4)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flips = 0
    for i in range(len(images)):
        windows = [(padded[i, :, t:t + 32, l:l + 32], f) for t in range(9) for l in range(9) for f in (0, 1)]
        matches = [f for w, f in windows if torch.equal(out[i], w.flip(-1) if f else w)]
        assert matches, f"image {i} is not a flipped or unflipped crop of the padded input"
        flips += matches[0]
    assert 10 < flips < 54  # about half of the images are flipped
    assert not torch.equal(nb.augment(images, nb.MAX_SHIFT), nb.augment(images, nb.MAX_SHIFT))  # random each time


def test_network_layers_shapes_and_parameter_count(nb, capsys):
    model = nb.ConvNet()
    nb.print_layer_table(model)
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["layer", "type", "output", "shape", "parameters"]
    assert [(row[0], " ".join(row[2:-1])) for row in rows[1:-1]] == [
        ("conv1", "(8, 28, 28)"), ("relu1", "(8, 28, 28)"), ("pool1", "(8, 14, 14)"),
        ("conv2", "(16, 10, 10)"), ("relu2", "(16, 10, 10)"), ("pool2", "(16, 5, 5)"), ("flatten", "(400,)"),
        ("fc1", "(128,)"), ("relu3", "(128,)"), ("fc2", "(64,)"), ("relu4", "(64,)"), ("fc3", "(10,)")]
    assert [row[-1] for row in rows[1:-1]] == ["608", "0", "0", "3,216", "0", "0", "0", "51,328", "0", "8,256", "0", "650"]
    assert rows[-1][:2] == ["total", "64,058"] and rows[-1][-1] == "64,058)"
    assert sum(p.numel() for p in model.parameters()) == nb.ASSIGNMENT_PARAMETERS == 64_058
    assert isinstance(model.conv1, torch.nn.Conv2d) and model.conv1.padding == (0, 0)
    assert isinstance(model.pool1, torch.nn.MaxPool2d) and model.pool1.kernel_size == 2
    assert model(torch.zeros(5, 3, 32, 32)).shape == (5, 10)


def test_fit_learns_the_fixture_and_is_reproducible(nb, tiny_cifar, offline_cifar, capsys):
    train_set, _ = nb.load_cifar10(tiny_cifar, download=False)
    images, labels = nb.dataset_tensors(train_set, torch.device("cpu"))
    train, val = nb.split_train_val(images, labels, 200)
    normalize = nb.make_normalize(train[0])

    def run(**recipe):
        nb.seed_everything(0)
        model = nb.ConvNet()
        history = nb.fit(model, train, val, normalize, torch.nn.CrossEntropyLoss(label_smoothing=0.1), 3, 64, 0.05,
                         **recipe)
        return model, history

    model, history = run()
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_acc"][-1] > 0.3
    assert len(history["epoch_seconds"]) == len(history["val_loss"]) == 3
    again, history_again = run()
    assert history_again["val_loss"] == history["val_loss"]  # same seed, same machine: same numbers
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))
    assert "epoch   3/3: train loss" in capsys.readouterr().out


def test_one_cycle_keeps_the_stated_momentum(nb):
    model = nb.ConvNet()
    optimizer = nb.make_optimizer(model, 0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10, cycle_momentum=False)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
        assert optimizer.param_groups[0]["momentum"] == 0.9


def test_mirror_test_time_augmentation(nb):
    """A network that cannot tell left from right predicts the same with and without the mirror view; one that
    can does not."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    normalize = nb.make_normalize(images)
    symmetric = torch.nn.Sequential(torch.nn.Conv2d(3, 10, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    symmetric[0].weight.data = (symmetric[0].weight + symmetric[0].weight.flip(-1)) / 2  # mirror-symmetric kernels
    plain, mirrored = (nb.tta_logits(symmetric, images, normalize, mirror=m) for m in (False, True))
    assert torch.allclose(plain, mirrored, atol=1e-5)
    model = nb.ConvNet()
    plain, mirrored = (nb.tta_logits(model, images, normalize, mirror=m) for m in (False, True))
    assert torch.allclose(plain, nb.predict_logits(model, images, normalize))  # one view: the plain prediction
    assert not torch.allclose(plain, mirrored, atol=1e-3)
    flipped = nb.predict_logits(model, images.flip(-1), normalize)
    assert torch.allclose(mirrored, (plain + flipped) / 2, atol=1e-5)


def test_predictions_keep_no_autograd_graph(nb):
    """predict_logits is decorated with @torch.no_grad(); the notebook loader must keep decorators, or every test
    and benchmark would build a graph over all 50 views (it did: 12 GB in one benchmark run)."""
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    logits = nb.tta_logits(nb.ConvNet(), images, nb.make_normalize(images), mirror=True, shift=1)
    assert not logits.requires_grad


def test_shifted_moves_the_image_and_fills_the_border_with_zeros(nb):
    images = torch.arange(1, 26, dtype=torch.uint8).view(1, 1, 5, 5)
    moved = nb.shifted(images, 1, -2)  # one pixel down, two to the left
    assert torch.equal(moved[0, 0, 1:, :3], images[0, 0, :4, 2:])
    assert not moved[0, 0, 0].any() and not moved[0, 0, :, 3:].any()
    assert torch.equal(nb.shifted(images, 0, 0), images)


def test_shift_test_time_augmentation_averages_every_position(nb):
    """A "network" that reads one pixel: averaged over all shifts up to 2 pixels, it reads the mean of the 5x5
    square around that pixel; with the mirror views too, also of the mirrored square."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    normalize = lambda x: x.float() / 255  # pixels in [0, 1], not standardized

    class OnePixel(torch.nn.Module):
        def forward(self, x):
            return x[:, :, 10, 20]  # (N, 3): the three channels of pixel (10, 20)

    square = images[:, :, 8:13, 18:23].float() / 255
    mirrored_square = images.flip(-1)[:, :, 8:13, 18:23].float() / 255
    shifted = nb.tta_logits(OnePixel(), images, normalize, shift=2)
    assert torch.allclose(shifted, square.mean((2, 3)), atol=1e-6)
    every_view = nb.tta_logits(OnePixel(), images, normalize, mirror=True, shift=2)
    assert torch.allclose(every_view, (square.mean((2, 3)) + mirrored_square.mean((2, 3))) / 2, atol=1e-6)


def test_confusion_matrix_rows_count_each_class(nb):
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predictions = torch.tensor([0, 1, 0, 1, 1, 0, 2, 1, 2])
    counts = nb.confusion_matrix(predictions, labels, 3)
    assert counts.tolist() == [[2, 1, 0], [0, 2, 0], [1, 1, 2]]
    assert counts.sum(1).tolist() == torch.bincount(labels).tolist()
    text = nb.describe_errors(counts, ["cat", "dog", "frog"])
    assert "Best class: dog (100.0% correct); worst: frog (50.0%)." in text
    assert "The most frequent error: 1 cat images taken for dog" in text
    fig = nb.plot_confusion_matrix(counts, ["cat", "dog", "frog"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "frog"]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert [t.get_text() for t in ax.texts][:3] == ["0.67", "0.33", "0.00"]


GOOD = {"seed": 0, "epochs": 68, "batch_size": 256, "learning_rate": 0.1, "timing_seconds": 1.0, "device": "auto",
        "val_size": 5000, "train_subset": 0}


def test_the_defaults_pass_the_parameter_checks(nb):
    nb.check_parameters(**GOOD)
    nb.check_parameters(**{**GOOD, "batch_size": 45_000, "device": "cpu", "learning_rate": 1})
    nb.check_parameters(**{**GOOD, "train_subset": 500, "batch_size": 500, "epochs": np.int64(3)})
    nb.check_parameters(**{**GOOD, "seed": np.int64(7)})
    nb.check_parameters(**{**GOOD, "seed": 2**32 - 1})


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "EPOCHS must be an integer >= 1, got 0"),
    ("epochs", 2.5, "EPOCHS must be an integer >= 1, got 2.5"),
    ("batch_size", 0, r"BATCH_SIZE must be an integer from 1 to 45,000 \(45,000 images to train on\), got 0"),
    ("batch_size", 45_001, r"BATCH_SIZE .* from 1 to 45,000 .*, got 45001"),
    ("learning_rate", 0, "LEARNING_RATE must be a number greater than 0, got 0"),
    ("learning_rate", -0.1, "LEARNING_RATE must be a number greater than 0, got -0.1"),
    ("learning_rate", math.nan, "LEARNING_RATE must be a number greater than 0, got nan"),
    ("learning_rate", "0.1", "LEARNING_RATE must be a number greater than 0, got '0.1'"),
    ("timing_seconds", 0.0, "TIMING_SECONDS must be a number greater than 0, got 0.0"),
    ("device", "gpu", 'DEVICE must be "auto", "cpu" or, where PyTorch sees a GPU, "cuda"; got \'gpu\''),
    ("val_size", 0, r"VAL_SIZE must be an integer from 1 to 49,999 \(50,000 training images\), got 0"),
    ("val_size", 50_000, r"VAL_SIZE must be an integer from 1 to 49,999 \(50,000 training images\), got 50000"),
    ("train_subset", -1, (r"TRAIN_SUBSET \(0: all\) must be an integer from 0 to 45,000 \(50,000 images less "
                         r"VAL_SIZE\), got -1")),
    ("train_subset", True, r"TRAIN_SUBSET \(0: all\) must be an integer .*got True"),
    ("seed", "abc", "SEED must be an integer from 0 to 4,294,967,295, got 'abc'"),
    ("seed", 1.5, "SEED must be an integer from 0 to 4,294,967,295, got 1.5"),
    ("seed", True, "SEED must be an integer .*got True"),
    ("seed", -1, "SEED must be an integer .*got -1"),
    ("seed", 2**32, "SEED must be an integer from 0 to 4,294,967,295, got 4294967296"),
])
def test_a_wrong_parameter_stops_with_its_name_and_what_it_accepts(nb, field, value, message):
    with pytest.raises(ValueError, match=message):
        nb.check_parameters(**{**GOOD, field: value})


@pytest.mark.parametrize("fields, message", [
    ({"val_size": 20_000}, r"VAL_SIZE must be an integer from 1 to 9,999 \(10,000 training images\), got 20000"),
    ({"val_size": 5000, "train_subset": 8000}, (r"TRAIN_SUBSET \(0: all\) must be an integer from 0 to 5,000 "
                                                r"\(10,000 images less VAL_SIZE\), got 8000")),
    ({"val_size": 5000, "batch_size": 6000}, (r"BATCH_SIZE must be an integer from 1 to 5,000 \(5,000 images to train "
                                             r"on\), got 6000")),
])
def test_the_split_is_checked_against_the_images_there_are(nb, fields, message):
    """A data folder with fewer images than CIFAR-10's 50,000 (a subset, a damaged download): each field that no
    longer fits names itself, its value and how many images there are."""
    nb.check_parameters(**{**GOOD, **fields})  # fits CIFAR-10
    with pytest.raises(ValueError, match=message):
        nb.check_parameters(**{**GOOD, **fields}, train_images=10_000)


def test_batch_size_is_checked_against_the_training_images_left(nb):
    with pytest.raises(ValueError, match=r"BATCH_SIZE .* from 1 to 1,000 .*, got 1001"):
        nb.check_parameters(**{**GOOD, "train_subset": 1000, "batch_size": 1001})
    with pytest.raises(ValueError, match=r"BATCH_SIZE .* from 1 to 40,000 .*, got 45000"):
        nb.check_parameters(**{**GOOD, "val_size": 10_000, "batch_size": 45_000})


def test_seeding_asks_for_determinism_and_full_float32_without_filling_new_tensors(nb):
    """TF32 off for cuDNN and cuBLAS: Task 3.2 compares own layers built from matrix products with cuDNN's
    convolution, and TF32 would round both differently."""
    nb.seed_everything(0)
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert not torch.backends.cudnn.benchmark  # cuDNN picks deterministic kernels under deterministic algorithms
    assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"


def test_cuda_without_a_gpu_is_refused_with_what_to_do(nb):
    if torch.cuda.is_available():
        nb.check_parameters(**{**GOOD, "device": "cuda"})
    else:
        with pytest.raises(ValueError, match='where PyTorch sees a GPU, "cuda"; got \'cuda\''):
            nb.check_parameters(**{**GOOD, "device": "cuda"})


def test_warnings_print_no_source_line(nb, capsys):
    nb.warn("something")
    assert capsys.readouterr().err == "Warning: something\n"
