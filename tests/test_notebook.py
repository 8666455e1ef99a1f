"""Run the whole notebook top to bottom in a real Jupyter kernel on the small fixture, and check what it shows."""
import ast
import importlib.util
import json
import math
import re
import subprocess
import sys

import nbformat
import papermill
import pytest
from conftest import N_TEST, OFFLINE_PATCH
from notebook_code import NOTEBOOK

PARAMETERS = {"MOUNT_DRIVE": False, "EPOCHS": 4, "BATCH_SIZE": 64, "LEARNING_RATE": 0.05, "VAL_SIZE": 200,
              "TIMING_SECONDS": 0.05}


def execute(work, data_dir, name, **parameters):
    """Run the notebook in a Jupyter kernel with working folder `work`; return the executed notebook."""
    startup = work / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-offline-cifar.py").write_text(OFFLINE_PATCH + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(work / "ipython"))
        mp.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        papermill.execute_notebook(str(NOTEBOOK), str(work / name), cwd=str(work), kernel_name="python3",
                                   parameters={**PARAMETERS, "DATA_DIR": str(data_dir), **parameters},
                                   progress_bar=False)
    return nbformat.read(work / name, as_version=4)


@pytest.fixture(scope="module")
def run(tiny_cifar, tmp_path_factory):
    """The executed notebook and the folder it ran in."""
    work = tmp_path_factory.mktemp("run")
    return execute(work, tiny_cifar, "executed.ipynb"), work


def cell_text(cell):
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.output_type == "stream")


def cell_images(cell):
    return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def top_level_code(source):
    """The statements of a cell outside its function and class definitions."""
    return "\n".join(ast.get_source_segment(source, node) for node in ast.parse(source).body
                     if not isinstance(node, (ast.FunctionDef, ast.ClassDef)))


def cell_running(notebook, snippet):
    """The one code cell that runs `snippet` (outside a definition)."""
    cells = [c for c in notebook.cells if c.cell_type == "code" and snippet in top_level_code(c.source)]
    assert len(cells) == 1, f"{len(cells)} cells contain {snippet!r}"
    return cells[0]


def number_after(text, label):
    match = re.search(re.escape(label) + r"\s*([-+0-9.e]+)", text)
    assert match, f"no {label!r} in:\n{text}"
    return float(match.group(1))


def test_training_learns_and_is_reported(run):
    notebook, work = run
    history = json.loads((work / "outputs" / "convnet_cifar10_history.json").read_text())
    assert len(history["train_loss"]) == PARAMETERS["EPOCHS"]
    assert all(math.isfinite(v) for v in history["train_loss"] + history["val_loss"])
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_acc"][-1] > 0.3  # chance is 0.1
    assert (work / "outputs" / "convnet_cifar10.pt").exists()
    assert cell_images(cell_running(notebook, "plot_history(history)")) == 1
    text = cell_text(cell_running(notebook, "test_loss, test_acc = evaluate("))
    assert number_after(text, "test accuracy:") > 30
    assert f"on {N_TEST} test images" in text


def test_data_cells_show_splits_and_images(run):
    notebook, _ = run
    text = cell_text(cell_running(notebook, "split_train_val(all_train_x"))
    assert "train: (800, 3, 32, 32) torch.uint8" in text
    assert "validation: (200, 3, 32, 32)" in text
    assert cell_images(cell_running(notebook, "show_images(train_x[:16]")) == 1


def test_network_summary_printed(run):
    text = cell_text(cell_running(run[0], "print_layer_summary(model)"))
    assert re.search(r"total\s+64,058", text)


def test_own_layer_checks_report_small_differences(run):
    notebook, _ = run
    text = cell_text(cell_running(notebook, "my_linear = myLinear(8, 16)"))
    assert number_after(text, "before copying the parameters: mean |nn.Linear(x) - myLinear(x)| =") > 1e-2
    assert number_after(text, "after copying the parameters:  mean |nn.Linear(x) - myLinear(x)| =") < 1e-6
    text = cell_text(cell_running(notebook, "conv_reports = {}"))
    before = [float(v) for v in re.findall(r"before copying the parameters, mean \|diff\| = ([0-9.e+-]+)", text)]
    outputs = [float(v) for v in re.findall(r"output rel\. error\s+([0-9.e+-]+)", text)]
    gradients = [float(v) for v in re.findall(r"grad \w+ rel\. error\s+([0-9.e+-]+)", text)]
    assert len(before) == len(outputs) == 4 and len(gradients) == 4 * 3
    assert min(before) > 1e-2 and max(outputs) < 1e-5 and max(gradients) < 1e-4
    text = cell_text(cell_running(notebook, "torch.autograd.gradcheck"))
    assert text.count("gradcheck passed = True") == 2


def test_own_networks_agree_and_are_timed(run):
    notebook, _ = run
    text = cell_text(cell_running(notebook, "networks = {\"default\": model}"))
    agreements = [float(v) for v in re.findall(r"default network on ([0-9.]+)%", text)]
    assert len(agreements) == 2 and min(agreements) >= 99.0
    accs = re.findall(r"accuracy on the first 20 test images: (\d+)%", text)
    assert len(set(accs)) == 1  # the same weights give the same accuracy
    table = cell_text(cell_running(notebook, "print_timing_table(timings)"))
    assert re.search(r"^\s+20\s", table, re.MULTILINE) and re.search(r"^\s+256\s", table, re.MULTILINE)
    assert "x the default's time at batch 20" in cell_text(cell_running(notebook, "loop_20, fast_20"))


def test_feature_maps_and_gradcam_are_drawn(run):
    notebook, _ = run
    assert cell_images(cell_running(notebook, "plot_feature_maps(fmap_images")) == 1
    text = cell_text(cell_running(notebook, "plot_feature_maps(fmap_images"))
    assert text.count("values in [0.0, 1.0]") == 4
    grid = cell_running(notebook, "plot_gradcam_grid(test_x")
    picked = re.search(r"picked (\d+) correctly and (\d+) wrongly", cell_text(grid))
    assert cell_images(grid) == (int(picked.group(1)) > 0) + (int(picked.group(2)) > 0) >= 1
    text = cell_text(cell_running(notebook, "ours = gradcam_from_scratch("))
    assert number_after(text, "max |from scratch - captum| =") < 1e-5


def test_summary_names_every_figure(run):
    text = cell_text(cell_running(run[0], "print(summary_table(results))"))
    for key in ("test accuracy", "seconds per epoch", "seconds of training in all", "2.1 myLinear mean |diff| after",
                "3.1 myConv2d mean |diff| after", "3.1 myConv2dFast mean |diff| after",
                "3.2 time ratio own/default, own, Eq. 4 loop, batch 20", "3.2 time ratio own/default, own, im2col",
                "3.4 Grad-CAM max |from scratch - captum|"):
        assert key in text, key


def test_committed_notebook_is_clean():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert not [c.id for c in code if c.outputs or c.execution_count], "strip outputs before committing"
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_ruff_passes_on_notebook():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(NOTEBOOK)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_second_run_reuses_the_saved_weights(run, tiny_cifar):
    first, work = run
    second = execute(work, tiny_cifar, "reused.ipynb", REUSE_WEIGHTS=True, TIMING_SECONDS=0.01)
    assert "loaded the weights of an earlier run" in cell_text(cell_running(second, "if REUSE_WEIGHTS and WEIGHTS_PATH.exists()"))
    accuracy_line = [cell_text(cell_running(nb, "test_loss, test_acc = evaluate(")).splitlines()[0]
                     for nb in (first, second)]
    assert accuracy_line[0] == accuracy_line[1]  # the same weights, the same test accuracy and loss
    assert cell_images(cell_running(second, "plot_history(history)")) == 1  # the saved curves
