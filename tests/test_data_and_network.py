"""Task 1.0-1.2 code from the notebook: data loading and its errors, augmentation, the network, the training loop."""
import math
import pickle
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
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "DATA_DIR" in message and "cifar-10-python.tar.gz" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_failed_download_gives_the_same_clear_error(nb, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_utils, "download_url", no_network)
    with pytest.raises(nb.DataUnavailableError, match="nor downloaded .*URLError.*no network"):
        nb.load_cifar10(tmp_path / "empty", download=True)


def test_damaged_file_gives_a_clear_error(nb, tiny_cifar, tmp_path, offline_cifar):
    shutil.copytree(tiny_cifar / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])  # cut short, as by an interrupted copy
    with pytest.raises(nb.DataUnavailableError, match="(?s)could not be read from .*delete .* if its files are damaged"):
        nb.load_cifar10(tmp_path, download=True)


def test_batch_with_too_few_pixels_gives_a_clear_error(nb, tiny_cifar, tmp_path, offline_cifar):
    """A half-synced Drive file can unpickle and still hold too few pixels: numpy's reshape raises ValueError."""
    shutil.copytree(tiny_cifar / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    with open(batch, "rb") as f:
        content = pickle.load(f)
    content["data"] = content["data"].ravel()[:5000]  # not a whole number of 3 x 32 x 32 images
    with open(batch, "wb") as f:
        pickle.dump(content, f)
    with pytest.raises(nb.DataUnavailableError, match="(?s)ValueError.*delete .* if its files are damaged"):
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


def test_split_is_disjoint_reproducible_and_checked(nb):
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 3, 32, 32)
    labels = torch.arange(100) % 10
    (tx, ty), (vx, vy) = nb.split_train_val(images, labels, 20, train_subset=50, seed=1)
    assert len(ty) == 50 and len(vy) == 20
    assert not set(tx[:, 0, 0, 0].tolist()) & set(vx[:, 0, 0, 0].tolist())
    (tx2, _), _ = nb.split_train_val(images, labels, 20, train_subset=50, seed=1)
    assert torch.equal(tx, tx2)
    (tx3, _), _ = nb.split_train_val(images, labels, 20, train_subset=0, seed=1)
    assert len(tx3) == 80  # 0: every image that is not held out
    with pytest.raises(ValueError, match="VAL_SIZE must be an integer from 1 to 99, got 100"):
        nb.split_train_val(images, labels, 100)
    with pytest.raises(ValueError, match=r"TRAIN_SUBSET \(0: all\) must be an integer from 0 to 80, got 81"):
        nb.split_train_val(images, labels, 20, train_subset=81)


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
    assert not torch.equal(nb.augment(images, nb.PADDING), nb.augment(images, nb.PADDING))  # random each time


def test_network_layers_shapes_and_parameter_count(nb):
    model = nb.ConvNet()
    rows = nb.layer_summary(model)
    assert [(name, shape) for name, _, shape, _ in rows] == [
        ("conv1", (8, 28, 28)), ("relu1", (8, 28, 28)), ("pool1", (8, 14, 14)),
        ("conv2", (16, 10, 10)), ("relu2", (16, 10, 10)), ("pool2", (16, 5, 5)), ("flatten", (400,)),
        ("fc1", (128,)), ("relu3", (128,)), ("fc2", (64,)), ("relu4", (64,)), ("fc3", (10,))]
    assert sum(p.numel() for p in model.parameters()) == sum(row[3] for row in rows) == nb.ASSIGNMENT_PARAMETERS
    assert nb.ASSIGNMENT_PARAMETERS == 64_058
    assert isinstance(model.conv1, torch.nn.Conv2d) and model.conv1.padding == (0, 0)
    assert isinstance(model.pool1, torch.nn.MaxPool2d) and model.pool1.kernel_size == 2
    assert model(torch.zeros(5, 3, 32, 32)).shape == (5, 10)


def test_fit_learns_the_fixture_and_is_reproducible(nb, tiny_cifar, offline_cifar, capsys):
    train_set, _ = nb.load_cifar10(tiny_cifar, download=False)
    images, labels = nb.dataset_tensors(train_set, torch.device("cpu"))
    train, val = nb.split_train_val(images, labels, 200)
    normalize = nb.make_normalize(*nb.channel_stats(train[0]))

    def run(**recipe):
        nb.seed_everything(0)
        model = nb.ConvNet()
        history = nb.fit(model, train, val, normalize, torch.nn.CrossEntropyLoss(label_smoothing=0.1), 3, 64, 0.05,
                         **recipe)
        return model, history

    model, history = run()
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_acc"][-1] > 0.3
    assert len(history["epoch_seconds"]) == len(history["lr"]) == 3
    assert history["lr"][0] > history["lr"][-1] > 0  # one cycle: past its peak, annealed towards zero
    again, history_again = run()
    assert history_again["val_loss"] == history["val_loss"]  # same seed, same machine: same numbers
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))
    assert "epoch   3/3: train loss" in capsys.readouterr().out


def test_channels_last_training_is_the_same_math_and_fit_returns_the_usual_layout(nb):
    """The CPU trains in channels-last for speed; the steps must equal those in NCHW up to float32 rounding, and
    the network must come back in the usual layout for the rest of the notebook."""
    assert nb.memory_format_for(torch.device("cpu")) == torch.channels_last
    assert nb.memory_format_for(torch.device("cuda")) == torch.contiguous_format
    torch.manual_seed(0)
    images, labels = torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (96,))
    normalize = nb.make_normalize([0.5] * 3, [0.25] * 3)
    weights = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(1)
        model = nb.ConvNet().to(memory_format=layout)
        optimizer = nb.make_optimizer(model, 0.05)
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
        nb.train_one_epoch(model, images, labels, normalize, torch.nn.CrossEntropyLoss(), optimizer, scheduler, 32,
                           memory_format=layout)
        weights[layout] = model.state_dict()
    for name, weight in weights[torch.contiguous_format].items():
        assert torch.allclose(weight, weights[torch.channels_last][name], atol=1e-5), name
    model = nb.ConvNet()
    nb.fit(model, (images, labels), (images[:16], labels[:16]), normalize, torch.nn.CrossEntropyLoss(), 1, 32, 0.05,
           log_lines=1)
    assert all(p.is_contiguous() for p in model.parameters())


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
    normalize = nb.make_normalize([0.5] * 3, [0.25] * 3)
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
    logits = nb.tta_logits(nb.ConvNet(), images, nb.make_normalize([0.5] * 3, [0.25] * 3), mirror=True, shift=1)
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
    normalize = nb.make_normalize([0.0] * 3, [1.0] * 3)

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


def test_pick_device(nb):
    assert nb.pick_device("cpu").type == "cpu"
    assert nb.pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="sees no CUDA GPU"):
            nb.pick_device("cuda")


GOOD = {"seed": 0, "epochs": 68, "batch_size": 256, "learning_rate": 0.1, "timing_seconds": 1.0, "device": "auto",
        "val_size": 5000, "train_subset": 0}


def test_the_defaults_pass_the_parameter_checks(nb):
    nb.check_parameters(**GOOD)
    nb.check_parameters(**{**GOOD, "batch_size": 45_000, "device": "cuda", "learning_rate": 1})
    nb.check_parameters(**{**GOOD, "train_subset": 500, "batch_size": 500, "epochs": np.int64(3)})
    nb.check_parameters(**{**GOOD, "seed": np.int64(7)})
    nb.check_parameters(**{**GOOD, "seed": 2**32 - 1})


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "EPOCHS must be an integer >= 1, got 0"),
    ("epochs", 2.5, "EPOCHS must be an integer >= 1, got 2.5"),
    ("batch_size", 0, r"BATCH_SIZE \(at most the training images\) must be an integer from 1 to 45,000, got 0"),
    ("batch_size", 45_001, "BATCH_SIZE .* from 1 to 45,000, got 45001"),
    ("learning_rate", 0, "LEARNING_RATE must be a number greater than 0, got 0"),
    ("learning_rate", -0.1, "LEARNING_RATE must be a number greater than 0, got -0.1"),
    ("learning_rate", math.nan, "LEARNING_RATE must be a number greater than 0, got nan"),
    ("learning_rate", "0.1", "LEARNING_RATE must be a number greater than 0, got '0.1'"),
    ("timing_seconds", 0.0, "TIMING_SECONDS must be a number greater than 0, got 0.0"),
    ("device", "gpu", 'DEVICE must be "auto", "cpu" or "cuda", got \'gpu\''),
    ("val_size", 0, "VAL_SIZE must be an integer from 1 to 49,999, got 0"),
    ("val_size", 50_000, "VAL_SIZE must be an integer from 1 to 49,999, got 50000"),
    ("train_subset", -1, r"TRAIN_SUBSET \(0: all\) must be an integer from 0 to 45,000, got -1"),
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


def test_batch_size_is_checked_against_the_training_images_left(nb):
    with pytest.raises(ValueError, match=r"BATCH_SIZE .* from 1 to 1,000, got 1001"):
        nb.check_parameters(**{**GOOD, "train_subset": 1000, "batch_size": 1001})
    with pytest.raises(ValueError, match=r"BATCH_SIZE .* from 1 to 40,000, got 45000"):
        nb.check_parameters(**{**GOOD, "val_size": 10_000, "batch_size": 45_000})


def test_full_float32_for_convolutions_and_matrix_products(nb):
    """TF32 off for both: Task 3.2 compares own layers built from matrix products with cuDNN's convolution."""
    nb.full_float32_math()
    if hasattr(torch.backends.cudnn, "conv"):
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cuda.matmul.allow_tf32 is False


def test_seeding_asks_for_determinism_without_filling_new_tensors(nb):
    nb.seed_everything(0)
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.utils.deterministic.fill_uninitialized_memory is False


def test_describe_curves_reads_the_history(nb):
    """When validation accuracy lies above training accuracy, and where its largest drop falls in the schedule."""
    history = {"train_acc": [0.30, 0.50, 0.62, 0.70, 0.80], "val_acc": [0.40, 0.55, 0.50, 0.72, 0.78],
               "lr": [0.05, 0.1, 0.08, 0.04, 0.001], "epoch_seconds": [1.0] * 5,
               "val_loss": [2.0, 1.5, 1.6, 1.1, 1.2]}
    text = nb.describe_curves(history)
    assert "training accuracy 80.00% (augmented images), validation 78.00%, a gap of +2.00 points" in text
    assert "validation accuracy beats training accuracy in 3 of 5 epochs (last in epoch 4): training accuracy is " \
           "measured on augmented images as weights change" in text
    assert "validation accuracy fell most in epoch 3, by 5.00 points, at learning rate 0.08 (after its peak 0.1 in " \
           "epoch 2; it ends at 0.001)" in text
    assert text.endswith("validation loss is lowest in epoch 4 of 5, then rises by 0.100 while training loss falls: "
                         "over-fitting")
    rising = nb.describe_curves({**history, "val_acc": [0.2, 0.3, 0.4, 0.5, 0.6], "val_loss": [2.0, 1.5, 1.4, 1.3, 1.2]})
    assert "beats training accuracy in 0 of 5 epochs\n" in rising and "never drops" in rising
    assert rising.endswith("validation loss is lowest in epoch 5 of 5: it has not turned up, the sign of over-fitting")
    early = nb.describe_curves({**history, "val_acc": [0.5, 0.45, 0.6, 0.7, 0.75]})
    assert "fell most in epoch 2, by 5.00 points, at learning rate 0.1 (after its peak 0.1 in epoch 2" in early
    rising_rate = nb.describe_curves({**history, "val_acc": [0.5, 0.45, 0.6, 0.7, 0.75], "lr": [0.01, 0.05, 0.1, 0.04,
                                                                                           0.001]})
    assert "at learning rate 0.05 (before its peak 0.1 in epoch 3" in rising_rate


def test_no_gpu_warning_says_what_happens_and_prints_no_source_line(nb, capsys):
    training = nb.no_gpu_warning(in_colab=True, reuse_weights=False)
    assert "training runs on the CPU and takes minutes, not seconds (Task 1.2 estimates it after its second " \
           "epoch)" in training
    assert "Runtime ▸ Change runtime type ▸ T4 GPU" in training
    reusing = nb.no_gpu_warning(in_colab=False, reuse_weights=True)
    assert "if REUSE_WEIGHTS finds no saved weights" in reusing and "Runtime" not in reusing
    nb.warn("something")
    assert capsys.readouterr().err == "Warning: something\n"
