"""What keeps Task 1.2 true on every path: a diverging loss stops the run, weights are saved whole with the settings
that trained them, reused weights say what they are, the time estimate comes from a representative epoch, counts
read right when they are 1, and the normalization is v2.Normalize's arithmetic."""
import json
import re

import nbformat
import pytest
import torch
from notebook_code import NOTEBOOK
from torchvision.transforms import v2

FORM = {"EPOCHS": 4, "BATCH_SIZE": 64, "LEARNING_RATE": 0.05, "SEED": 0, "TRAIN_SUBSET": 0, "VAL_SIZE": 200}


def tiny_data(n=128):
    torch.manual_seed(0)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (n,))


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), 4.7])
def test_a_diverged_epoch_stops_with_the_rate_the_epoch_and_the_default(nb, loss):
    with pytest.raises(nb.TrainingDiverged) as err:
        nb.stop_if_diverged(loss, 3, 100.0)
    message = str(err.value)
    assert f"the mean training loss of epoch 3 is {loss:.4g}, above 4.61 (twice ln 10" in message
    assert "LEARNING_RATE = 100 is too large: lower it (the default is 0.1)" in message
    assert "Nothing of this run was saved" in message


def test_a_slow_start_is_not_divergence(nb):
    for loss in (2.303, 2.9, 4.6):  # a uniform guess, or worse, but not confidently wrong
        nb.stop_if_diverged(loss, 1, 0.1)


def test_the_default_named_in_the_message_is_the_forms(nb):
    parameters = next(c for c in nbformat.read(NOTEBOOK, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    default = float(re.search(r"^LEARNING_RATE = ([0-9.]+)", parameters.source, re.MULTILINE).group(1))
    assert nb.DEFAULT_LEARNING_RATE == default


def test_fit_with_a_huge_rate_stops_in_its_first_epochs(nb, capsys):
    images, labels = tiny_data()
    normalize = nb.make_normalize([0.5] * 3, [0.25] * 3)
    nb.seed_everything(0)
    with pytest.raises(nb.TrainingDiverged, match=r"epoch [12] .*LEARNING_RATE = 10000 is too large"):
        nb.fit(nb.ConvNet(), (images, labels), (images[:32], labels[:32]), normalize, torch.nn.CrossEntropyLoss(), 5, 32,
               1e4)
    assert "epoch   5/5" not in capsys.readouterr().out


def saved_run(nb, tmp_path, form=FORM, epochs=4):
    weights, history_path = tmp_path / "w.pt", tmp_path / "h.json"
    history = {"train_loss": [2.0] * epochs, "val_acc": [0.5] * epochs, "parameters": form, "device": "CPU (test)"}
    nb.save_training(nb.ConvNet(), history, weights, history_path)
    return weights, history_path


def test_weights_and_history_are_saved_whole(nb, tmp_path):
    weights, history_path = saved_run(nb, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.json", "w.pt"]  # no .partial file left
    assert json.loads(history_path.read_text())["parameters"] == FORM
    assert set(torch.load(weights, weights_only=True)) == set(nb.ConvNet().state_dict())


def test_reused_weights_say_what_trained_them(nb, tmp_path, capsys):
    weights, history_path = saved_run(nb, tmp_path)
    history = nb.reusable_history(weights, history_path, FORM)
    assert history["parameters"] == FORM
    out, err = capsys.readouterr()
    assert out == ("the saved weights were trained on CPU (test) with EPOCHS = 4, BATCH_SIZE = 64, LEARNING_RATE = "
                   "0.05, SEED = 0, TRAIN_SUBSET = 0, VAL_SIZE = 200\n") and err == ""


def test_reused_weights_warn_for_each_field_that_differs(nb, tmp_path, capsys):
    weights, history_path = saved_run(nb, tmp_path)
    assert nb.reusable_history(weights, history_path, {**FORM, "EPOCHS": 68, "LEARNING_RATE": 0.1}) is not None
    err = capsys.readouterr().err
    assert err.startswith("Warning: REUSE_WEIGHTS: the form's EPOCHS = 68, LEARNING_RATE = 0.1 differ from them: the "
                          "weights and curves below are the saved run's")
    assert "validation images" not in err  # the split is the same
    nb.reusable_history(weights, history_path, {**FORM, "SEED": 1})
    assert "SEED = 1 differ" in (err := capsys.readouterr().err)
    assert "its training images may include this run's validation images" in err


@pytest.mark.parametrize("damage", ["no parameters", "unfinished", "no weights", "no history", "not JSON"])
def test_weights_of_an_unknown_or_unfinished_run_are_never_reused(nb, tmp_path, capsys, damage):
    weights, history_path = saved_run(nb, tmp_path, epochs=2 if damage == "unfinished" else 4)
    if damage == "no parameters":  # written by an earlier version of the notebook, or by a run that diverged there
        history_path.write_text(json.dumps({"train_loss": [1e30], "device": "CPU"}))
    elif damage == "no weights":
        weights.unlink()
    elif damage == "no history":
        history_path.unlink()
    elif damage == "not JSON":
        history_path.write_text("{cut short")
    assert nb.reusable_history(weights, history_path, FORM) is None
    assert "holds no weights of a finished run of this notebook: training" in capsys.readouterr().err


def test_the_time_estimate_comes_from_the_second_epoch(nb, capsys):
    history = {"train_loss": [2.0, 1.5], "train_acc": [0.3, 0.5], "val_loss": [1.9, 1.4], "val_acc": [0.3, 0.5],
               "epoch_seconds": [3.0, 1.0]}
    nb.log_epoch({**history, "epoch_seconds": [3.0]}, 1, 10, 6)
    assert "will take" not in capsys.readouterr().out  # the first epoch carries the start-up
    nb.log_epoch(history, 2, 10, 6)
    assert "epoch 1 took 3.0 s with the start-up, epoch 2 1.0 s: all 10 epochs will take about 12 s" in \
        capsys.readouterr().out
    nb.log_epoch(history, 2, 2, 6)
    assert "will take" not in capsys.readouterr().out  # the run is over


def test_plural(nb):
    assert nb.plural(1, "epoch") == "1 epoch" and nb.plural(68, "epoch") == "68 epochs"
    assert nb.plural(1, "class", "classes") == "1 class" and nb.plural(2, "class", "classes") == "2 classes"
    assert nb.plural(10_000, "image") == "10,000 images" and nb.plural(0, "image") == "0 images"


def test_describe_curves_after_one_epoch_reads_right(nb):
    text = nb.describe_curves({"train_acc": [0.3], "val_acc": [0.4], "lr": [0.1], "epoch_seconds": [1.0],
                               "val_loss": [2.0]})
    assert text.startswith("after 1 epoch (1.0 s)") and "in 1 of 1 epoch (last in epoch 1)" in text


def test_normalize_is_v2_normalize_with_the_statistics_kept_on_the_device(nb):
    images = tiny_data(16)[0]
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    reference = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    normalize = nb.make_normalize(mean, std)
    assert torch.equal(normalize(images), reference(images))  # the same arithmetic, to the bit
    assert torch.equal(normalize(images[:4]), reference(images[:4]))  # and again from the kept statistics
