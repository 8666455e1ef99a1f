"""What keeps Task 1.2 true on every path: a diverging loss stops the run, an earlier run's files are kept and new
ones saved whole with the settings and the normalization that trained them, a full disk loses nothing, reused weights
say what they are, a saved run that cannot be used is named with what is wrong, and counts read right."""
import argparse
import errno
import json
import pathlib
import re

import nbformat
import pytest
import torch
from notebook_code import NOTEBOOK

FORM = {"EPOCHS": 4, "BATCH_SIZE": 64, "LEARNING_RATE": 0.05, "SEED": 0, "TRAIN_SUBSET": 0, "VAL_SIZE": 200}


def tiny_data(n=128):
    torch.manual_seed(0)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (n,))


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), 4.7])
def test_a_diverged_epoch_stops_with_the_rate_the_epoch_and_the_default(nb, loss):
    with pytest.raises(nb.TrainingDiverged) as err:
        nb.stop_if_diverged(loss, 3, 100.0)
    message = str(err.value)
    assert f"the mean training loss of epoch 3 is {loss:.4g}, above 4.61, twice a uniform guess's" in message
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
    normalize = nb.make_normalize(images)
    nb.seed_everything(0)
    with pytest.raises(nb.TrainingDiverged, match=r"epoch [12] .*LEARNING_RATE = 10000 is too large"):
        nb.fit(nb.ConvNet(), (images, labels), (images[:32], labels[:32]), normalize, torch.nn.CrossEntropyLoss(), 5, 32,
               1e4)
    assert "epoch   5/5" not in capsys.readouterr().out


NORMALIZATION = [[0.49, 0.48, 0.45], [0.25, 0.24, 0.26]]


def history_of(form=FORM, epochs=4):
    return {"train_loss": [2.0] * epochs, "train_acc": [0.3] * epochs, "val_loss": [1.9] * epochs,
            "val_acc": [0.5] * epochs, "epoch_seconds": [1.0] * epochs, "parameters": form, "device": "CPU (test)",
            "normalization": NORMALIZATION}


def saved_run(nb, folder, form=FORM, epochs=4):
    weights, history_path = folder / "w.pt", folder / "h.json"
    source = nb.save_training(nb.ConvNet(), history_of(form, epochs), weights, history_path)
    assert source == f"trained in this run, saved to {weights}"  # nothing earlier to keep
    return weights, history_path


def test_weights_and_history_are_saved_whole(nb, tmp_path):
    weights, history_path = saved_run(nb, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.json", "w.pt"]  # no .partial file left
    assert json.loads(history_path.read_text())["parameters"] == FORM
    assert set(torch.load(weights, weights_only=True)) == set(nb.ConvNet().state_dict())


def test_a_new_training_keeps_the_earlier_runs_files(nb, tmp_path):
    """Nothing trained is replaced without a copy: the earlier pair is renamed with its time, never overwritten."""
    weights, history_path = saved_run(nb, tmp_path)
    earlier = {path.suffix: path.read_bytes() for path in (weights, history_path)}
    source = nb.save_training(nb.ConvNet(), history_of(epochs=3), weights, history_path)
    kept = re.fullmatch(rf"trained in this run, saved to {re.escape(str(weights))}; the earlier run's files kept as "
                        r"(\S+), (\S+)", source).groups()
    assert [re.fullmatch(r"(w|h)\.previous-\d{8}-\d{6}\.(pt|json)", name).group(1) for name in kept] == ["w", "h"]
    assert {(tmp_path / name).suffix: (tmp_path / name).read_bytes() for name in kept} == earlier
    assert len(json.loads(history_path.read_text())["train_loss"]) == 3  # the new run's
    assert len(list(tmp_path.iterdir())) == 4


def test_reused_weights_say_what_trained_them(nb, tmp_path, capsys):
    weights, history_path = saved_run(nb, tmp_path)
    model = nb.ConvNet()
    history = nb.reuse_saved_run(model, weights, history_path, FORM)
    assert history["parameters"] == FORM
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(),
                                                 torch.load(weights, weights_only=True).values()))
    out, err = capsys.readouterr()
    assert out == ("the saved weights were trained on CPU (test) with EPOCHS = 4, BATCH_SIZE = 64, LEARNING_RATE = "
                   "0.05, SEED = 0, TRAIN_SUBSET = 0, VAL_SIZE = 200\n") and err == ""


def test_reused_weights_warn_for_each_field_that_differs(nb, tmp_path, capsys):
    weights, history_path = saved_run(nb, tmp_path)
    assert nb.reuse_saved_run(nb.ConvNet(), weights, history_path, {**FORM, "EPOCHS": 68, "LEARNING_RATE": 0.1})
    err = capsys.readouterr().err
    assert err.startswith("Warning: REUSE_WEIGHTS: the form's EPOCHS = 68, LEARNING_RATE = 0.1 differ from them: the "
                          "weights, their normalization and the curves below are the saved run's")
    assert "validation images" not in err  # the split is the same
    nb.reuse_saved_run(nb.ConvNet(), weights, history_path, {**FORM, "SEED": 1})
    assert "SEED = 1 differ" in (err := capsys.readouterr().err)
    assert "its training images may include this run's validation images" in err


def cut_short(path):
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


@pytest.mark.parametrize("damage, said", [
    ("history not JSON", (r"h\.json cannot be used: it is not JSON: cut short, or not a history \(JSONDecodeError: "
                         r"Unterminated string starting at: line 1 column \d+ \(char \d+\)\)\.")),
    ("history missing", (r"h\.json cannot be used: it is not there \(FileNotFoundError: \[Errno 2\] No such file or "
                         r"directory: '[^']+h\.json'\)\.")),
    ("history from an older version", (r"h\.json cannot be used: it lacks 'parameters': an older version of this "
                                       r"notebook wrote it \(KeyError: 'parameters'\)\.")),
    ("history without the normalization", (r"h\.json cannot be used: it lacks 'normalization': an older version of "
                                           r"this notebook wrote it \(KeyError: 'normalization'\)\.")),
    ("history a JSON list", (r"h\.json cannot be used: it is not this notebook's history \(TypeError: list indices "
                             r"must be integers or slices, not str\)\.")),
    ("run unfinished", r"h\.json cannot be used: that run did not finish \(ValueError: it records 2 epochs of 4\)\."),
    ("weights cut short", r"w\.pt cannot be used: it is cut short, or not PyTorch's \(RuntimeError: PytorchStream"),
    ("weights not PyTorch's", r"w\.pt cannot be used: it is cut short, or not PyTorch's \((Index|Unpickling)Error: "),
    ("weights of another program", (r"w\.pt cannot be used: it is cut short, or not PyTorch's \(UnpicklingError: "
                                    r"Weights only load failed\)\. Training anew")),  # its first sentence of many
    ("weights missing", r"w\.pt cannot be used: it is not there \(FileNotFoundError"),
    ("weights of another network", (r"w\.pt cannot be used: it holds another network's weights \(RuntimeError: "
                                    r"Error\(s\) in loading state_dict for ConvNet:\)\.")),
])
def test_a_saved_run_that_cannot_be_used_is_named_with_what_is_wrong(nb, tmp_path, capsys, damage, said):
    """Never a raw torch or JSON error: the file, what is wrong with it, and that the run trains anew; the files stay
    where they are until the new training renames them."""
    weights, history_path = saved_run(nb, tmp_path, epochs=2 if damage == "run unfinished" else 4)
    if damage == "history not JSON":
        cut_short(history_path)
    elif damage == "history missing":
        history_path.unlink()
    elif damage == "history from an older version":  # before the history recorded its settings
        history_path.write_text(json.dumps({"train_loss": [2.0], "device": "CPU"}))
    elif damage == "history without the normalization":  # before it was saved with the weights
        history_path.write_text(json.dumps({k: v for k, v in history_of().items() if k != "normalization"}))
    elif damage == "history a JSON list":
        history_path.write_text("[1, 2]")
    elif damage == "weights cut short":
        cut_short(weights)
    elif damage == "weights not PyTorch's":
        weights.write_text("a text file, not saved weights. " * 20)
    elif damage == "weights of another program":
        torch.save(argparse.Namespace(weights=[1.0]), weights)
    elif damage == "weights missing":
        weights.unlink()
    elif damage == "weights of another network":
        torch.save(torch.nn.Linear(2, 2).state_dict(), weights)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert nb.reuse_saved_run(nb.ConvNet(), weights, history_path, FORM) is None
    err = capsys.readouterr().err
    assert err.startswith(f"Warning: REUSE_WEIGHTS: {tmp_path}/"), err
    assert re.search(said, err), err
    assert len(err.splitlines()) == 1  # the cause's first line, cut at a sentence's end, never mid-word
    assert err.rstrip().endswith("Training anew; the files there are kept, renamed, when the new ones are saved")
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # nothing deleted, nothing moved yet


def test_curve_findings_are_measurements_beside_their_comparison(nb):
    """Numbers, no verdict: the last accuracies and their gap, the epochs where validation lies above training, and
    the lowest validation loss beside the last."""
    history = {"train_acc": [0.30, 0.50, 0.62, 0.70, 0.80], "val_acc": [0.40, 0.55, 0.50, 0.72, 0.78],
               "epoch_seconds": [1.0] * 5, "val_loss": [2.0, 1.5, 1.6, 1.1, 1.2]}
    assert nb.curve_findings(history).splitlines() == [
        ("after epoch 5 (5.0 s of training): training accuracy 80.00% (augmented images), validation 78.00%; "
         "training minus validation: +2.00 points"),
        "epochs with validation accuracy above training accuracy: 3 of 5",
        "validation loss: lowest 1.1000 in epoch 4 of 5, last 1.2000"]
    one = nb.curve_findings({"train_acc": [0.3], "val_acc": [0.4], "epoch_seconds": [1.0], "val_loss": [2.0]})
    assert one.startswith("after epoch 1 (1.0 s of training)") and "training accuracy: 1 of 1\n" in one
    assert "over-fitting" not in nb.curve_findings(history) + one  # the markdown says how to read them


def fill_the_disk(monkeypatch, error=errno.ENOSPC):
    """Every write of a `.partial` file fails as a full disk (or Drive) fails it, after part of it is written."""
    write_bytes = pathlib.Path.write_bytes

    def full(path, data):
        if not path.name.endswith(".partial"):
            return write_bytes(path, data)
        write_bytes(path, data[:len(data) // 2])
        raise OSError(error, "No space left on device" if error == errno.ENOSPC else "Input/output error", str(path))
    monkeypatch.setattr(pathlib.Path, "write_bytes", full)


@pytest.mark.parametrize("error, said", [(errno.ENOSPC, "is full"), (errno.EDQUOT, "is full"),
                                         (errno.EIO, "cannot be written ([Errno 5] Input/output error: ")])
def test_a_full_disk_leaves_the_earlier_run_untouched_and_the_run_goes_on(nb, tmp_path, capsys, monkeypatch, error,
                                                                         said):
    """The new files are written whole before anything earlier moves: when a write fails, the partial files go,
    the earlier pair keeps its names and bytes, the warning names the folder and the cause, and the run goes on."""
    weights, history_path = saved_run(nb, tmp_path)
    earlier = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    fill_the_disk(monkeypatch, error)
    source = nb.save_training(nb.ConvNet(), history_of(epochs=3), weights, history_path)
    assert source == "trained in this run, NOT saved (the warning above says why)"
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == earlier  # and no .partial file
    err = capsys.readouterr().err
    assert err.startswith(f"Warning: the trained network was NOT saved: {tmp_path} {said}")
    assert err.rstrip().endswith("the files there are untouched. This run goes on with the network in memory: free "
                                 "some space and train again to keep it")
    monkeypatch.undo()
    assert nb.reuse_saved_run(nb.ConvNet(), weights, history_path, FORM)["train_loss"] == [2.0] * 4  # the earlier run


def test_an_interrupted_save_leaves_the_earlier_run_as_it_was(nb, tmp_path, monkeypatch):
    """An interrupt while the new weights are written: the earlier pair keeps its names and bytes (a `.partial` file
    may stay, which nothing reads and the next save overwrites)."""
    weights, history_path = saved_run(nb, tmp_path)
    earlier = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    write_bytes = pathlib.Path.write_bytes

    def interrupted(path, data):
        write_bytes(path, data[:len(data) // 2])
        raise KeyboardInterrupt
    monkeypatch.setattr(pathlib.Path, "write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        nb.save_training(nb.ConvNet(), history_of(), weights, history_path)
    assert {name: (tmp_path / name).read_bytes() for name in earlier} == earlier


def test_reused_weights_bring_the_normalization_that_trained_them(nb, tmp_path):
    """A reused run normalizes with the saved mean and std, not with those of this run's training images."""
    images = tiny_data(16)[0]
    normalize = nb.make_normalize(images, NORMALIZATION)
    assert [normalize.transforms[-1].mean, normalize.transforms[-1].std] == NORMALIZATION
    assert torch.allclose(normalize(images)[:, 0], (images[:, 0] / 255 - 0.49) / 0.25, atol=1e-6)


def test_normalize_is_torchvisions_v2_normalize_with_the_training_images_statistics(nb):
    images = tiny_data(16)[0]
    normalize = nb.make_normalize(images)
    _, standardize = normalize.transforms
    pixels = images.float().div(255)
    assert standardize.mean == pytest.approx(pixels.mean((0, 2, 3)).tolist())
    assert standardize.std == pytest.approx(pixels.std((0, 2, 3)).tolist(), rel=1e-5)
    out = normalize(images)
    assert out.dtype == torch.float32 and out.mean((0, 2, 3)).abs().max() < 1e-5
    assert torch.allclose(out.std((0, 2, 3)), torch.ones(3), atol=1e-4)
