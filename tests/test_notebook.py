"""Run the whole notebook top to bottom in a real Jupyter kernel on the small fixture, and check what it shows.

The main run takes the notebook's Colab branch: a stand-in `google.colab` package (tests/colab_standin) is imported
at kernel start, as Colab does before the first cell, and its `drive.mount` records each call. "Downloading"
CIFAR-10 copies an archive of the small fixture (the harness replaces torchvision's `download_url`, and records
each call), so the whole path from an empty Drive folder to a trained network runs offline.
"""
import ast
import importlib.metadata
import importlib.util
import json
import math
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
import papermill
import pytest
from conftest import N_TEST, OFFLINE_PATCH
from notebook_code import NOTEBOOK

PARAMETERS = {"EPOCHS": 4, "BATCH_SIZE": 64, "LEARNING_RATE": 0.05, "VAL_SIZE": 200, "TIMING_SECONDS": 0.05}
STANDIN = Path(__file__).resolve().parent / "colab_standin"
COLAB_STARTUP = """\
import json, os, shutil, sys
sys.path.insert(0, {standin!r})
import google.colab  # noqa: F401  (Colab imports it before the first cell)
import torchvision.datasets.utils as _utils


def _download_url(url, root, filename=None, md5=None, **kwargs):  # the network, played by a local archive
    with open(os.environ["COLAB_STANDIN_LOG"], "a") as log:
        log.write(json.dumps({{"call": "download", "url": url}}) + "\\n")
    os.makedirs(root, exist_ok=True)
    shutil.copy({archive!r}, os.path.join(root, filename or os.path.basename(url)))


_utils.download_url = _download_url
"""


def execute(work, name, notebook=NOTEBOOK, colab_archive=None, env=(), **parameters):
    """Run `notebook` in a Jupyter kernel with working folder `work`; return the executed notebook. With
    `colab_archive`, the kernel looks like Colab's and downloads that archive in place of CIFAR-10."""
    startup = work / f"ipython-{name}" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-offline-cifar.py").write_text(OFFLINE_PATCH + "\n")
    if colab_archive:
        (startup / "01-colab.py").write_text(COLAB_STARTUP.format(standin=str(STANDIN), archive=str(colab_archive)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(startup.parents[1]))
        mp.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        mp.setenv("COLAB_STANDIN_LOG", str(work / "colab.log"))
        for key, value in env:
            mp.setenv(key, value)
        papermill.execute_notebook(str(notebook), str(work / name), cwd=str(work), kernel_name="python3",
                                   parameters={**PARAMETERS, **parameters}, progress_bar=False)
    return nbformat.read(work / name, as_version=4)


def colab_log(work):
    path = work / "colab.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="session")
def cifar_archive(tiny_cifar, tmp_path_factory):
    """The small fixture packed like the real download, cifar-10-python.tar.gz."""
    archive = tmp_path_factory.mktemp("server") / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_cifar / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


@pytest.fixture(scope="module")
def run(cifar_archive, tmp_path_factory):
    """The executed notebook (Colab branch, Drive folder empty at first), its working and its Drive folder."""
    work = tmp_path_factory.mktemp("run")
    drive = work / "content" / "drive" / "MyDrive" / "assignment2_convnets"
    notebook = execute(work, "executed.ipynb", colab_archive=cifar_archive, DRIVE_FOLDER=str(drive))
    return notebook, work, drive


def cell_text(cell, stream="stdout"):
    return "".join(out.get("text", "") for out in cell.get("outputs", [])
                   if out.output_type == "stream" and out.get("name") == stream)


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


def test_colab_branch_mounts_drive_and_keeps_everything_there(run):
    notebook, work, drive = run
    assert colab_log(work) == [{"call": "drive.mount", "mountpoint": "/content/drive"},
                               {"call": "download", "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"}]
    assert sorted(p.name for p in (drive / "data").iterdir()) == ["cifar-10-batches-py"]  # the archive is gone
    assert (drive / "convnet_cifar10.pt").exists() and (drive / "convnet_cifar10_history.json").exists()
    assert not (work / "outputs").exists()
    text = cell_text(cell_running(notebook, "WORK_DIR = mount_drive(DRIVE_FOLDER)"))
    assert f"dataset folder: {drive / 'data'}" in text


def test_environment_and_missing_gpu_are_reported(run):
    notebook = run[0]
    setup = cell_running(notebook, "device = pick_device(DEVICE)")
    versions = {name: importlib.metadata.version(name) for name in ("torch", "torchvision", "captum", "numpy")}
    assert ", ".join(f"{name} {version}" for name, version in versions.items()) in cell_text(setup)
    assert "running on CPU" in cell_text(setup)
    warning = cell_text(setup, "stderr")
    assert "No GPU found" in warning and "Runtime ▸ Change runtime type ▸ T4 GPU" in warning
    training = cell_text(cell_running(notebook, "history = fit("))
    first_epoch = number_after(training, "the first epoch took")
    assert number_after(training, f"all {PARAMETERS['EPOCHS']} epochs will take about") == pytest.approx(
        PARAMETERS["EPOCHS"] * first_epoch, abs=1)


def test_captum_pin_is_the_version_the_tests_run_with(nb):
    assert nb.CAPTUM_VERSION == importlib.metadata.version("captum")
    assert f"captum=={nb.CAPTUM_VERSION}" in (NOTEBOOK.parent / "requirements.txt").read_text().split()


def test_training_learns_and_is_reported(run):
    notebook, _, drive = run
    history = json.loads((drive / "convnet_cifar10_history.json").read_text())
    assert len(history["train_loss"]) == PARAMETERS["EPOCHS"]
    assert all(math.isfinite(v) for v in history["train_loss"] + history["val_loss"])
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_acc"][-1] > 0.3  # chance is 0.1
    assert cell_images(cell_running(notebook, "plot_history(history)")) == 1
    text = cell_text(cell_running(notebook, "test_acc_mirror = accuracy("))
    plain = number_after(text, "test accuracy:")
    assert plain > 30 and f"on {N_TEST} test images" in text
    mirror = number_after(text, "test accuracy with test-time augmentation, image and mirror image (2 views):")
    every_view = number_after(text, "test accuracy with test-time augmentation, all shifts up to 2 px, mirrored or not "
                                    "(50 views):")
    assert mirror > 30 and every_view > 30


def test_plain_text_training_log(run):
    """One line per few epochs and at the last, so that an exported copy shows the training without widgets."""
    text = cell_text(cell_running(run[0], "history = fit("))
    epochs = [int(m) for m in re.findall(r"^epoch\s+(\d+)/4: train loss [0-9.]+ acc [0-9.]+% \| val loss [0-9.]+ "
                                         r"acc [0-9.]+% \| [0-9.]+ s$", text, re.MULTILINE)]
    assert epochs == [1, 2, 3, 4]


def test_confusion_matrix_and_per_class_accuracy(run):
    cell = cell_running(run[0], "test_counts = confusion_matrix(")
    text = cell_text(cell)
    per_class = dict(re.findall(r"(\w+) ([0-9.]+)%", text.splitlines()[0]))
    assert len(per_class) == 10 and all(0 <= float(v) <= 100 for v in per_class.values())
    assert re.search(r"Best class: \w+ \([0-9.]+% correct\); worst: \w+ \([0-9.]+%\)", text)
    assert re.search(r"The most frequent error: \d+ \w+ images taken for \w+", text)
    assert cell_images(cell) == 1


def test_data_cells_show_splits_and_images(run):
    notebook = run[0]
    text = cell_text(cell_running(notebook, "split_train_val(all_train_x"))
    assert "train: (800, 3, 32, 32) torch.uint8" in text
    assert "validation: (200, 3, 32, 32)" in text
    assert cell_images(cell_running(notebook, "show_images(train_x[:16]")) == 1


def test_network_summary_printed(run):
    text = cell_text(cell_running(run[0], "print_layer_summary(model)"))
    assert re.search(r"total\s+64,058", text)


def test_own_layer_checks_report_small_differences(run):
    notebook = run[0]
    text = cell_text(cell_running(notebook, "my_linear = myLinear(8, 16)"))
    assert number_after(text, "before copying the parameters: mean |nn.Linear(x) - myLinear(x)| =") > 1e-2
    assert number_after(text, "after copying the parameters:  mean |nn.Linear(x) - myLinear(x)| =") < 1e-6
    text = cell_text(cell_running(notebook, "conv_reports = {}"))
    before = [float(v) for v in re.findall(r"before copying the parameters, mean \|diff\| = ([0-9.e+-]+)", text)]
    outputs = [float(v) for v in re.findall(r"output rel\. error\s+([0-9.e+-]+)", text)]
    gradients = [float(v) for v in re.findall(r"grad \w+ rel\. error\s+([0-9.e+-]+)", text)]
    assert len(before) == len(outputs) == 6 and len(gradients) == 2 * (3 + 3 + 2)  # the third has no bias
    assert "kernel_size=(2, 3), stride=(2, 1), padding=(1, 0), bias=False" in text
    assert min(before) > 1e-2 and max(outputs) < 1e-5 and max(gradients) < 1e-4
    text = cell_text(cell_running(notebook, "torch.autograd.gradcheck"))
    assert text.count("gradcheck passed = True") == 2


def test_own_networks_agree_and_are_timed(run):
    notebook = run[0]
    text = cell_text(cell_running(notebook, "networks = {\"default\": model}"))
    agreements = [float(v) for v in re.findall(r"default network on ([0-9.]+)%", text)]
    assert len(agreements) == 2 and min(agreements) >= 99.0
    accs = re.findall(r"accuracy on the first 20 test images: (\d+)%", text)
    assert len(set(accs)) == 1  # the same weights give the same accuracy
    table = cell_text(cell_running(notebook, "print_timing_table(timings)"))
    rows = re.findall(r"^\s*(20|256)\s+(default|own, Eq\. 4 loop|own, im2col)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)"
                      r"\s+(\d+)\s*([0-9.]+x)?$", table, re.MULTILINE)
    assert len(rows) == 6, table
    means = {(batch, name): float(mean) for batch, name, mean, *_ in rows}
    for batch, name, mean, std, median, blocks, ratio in rows:
        assert float(std) >= 0 and int(blocks) >= 1
        if name != "default":  # the ratio printed is the ratio of the means
            assert float(ratio[:-1]) == pytest.approx(float(mean) / means[(batch, "default")], abs=0.01)
    assert "x the default's time at batch 20" in cell_text(cell_running(notebook, "loop_20, fast_20"))


def test_feature_maps_and_gradcam_are_drawn(run):
    notebook = run[0]
    cell = cell_running(notebook, "plot_feature_maps(fmap_images")
    assert cell_images(cell) == 1 and cell_text(cell).count("values in [0.0, 1.0]") == 4
    picked = re.search(r"picked (\d+) correctly and (\d+) wrongly", cell_text(cell_running(notebook, "pick_correct_and_wrong(")))
    assert "centred on input pixel 6.5 + 2*q" in cell_text(cell_running(notebook, "pick_correct_and_wrong("))
    assert cell_images(cell_running(notebook, "plot_stretch_and_aligned(")) == 1
    grid = cell_running(notebook, "plot_gradcam_grid(test_x")
    assert cell_images(grid) == (int(picked.group(1)) > 0) + (int(picked.group(2)) > 0) >= 1
    observations = cell_text(cell_running(notebook, "print(describe_gradcam("))
    assert re.search(r"lies in the central 16x16 square", observations)
    text = cell_text(cell_running(notebook, "ours = gradcam_from_scratch("))
    assert number_after(text, "max |from scratch - captum| =") < 1e-5


def test_summary_names_every_figure(run):
    notebook = run[0]
    text = cell_text(cell_running(notebook, "print(summary_table(results))"))
    assert text.splitlines()[0].endswith(f"weights trained in this run, {PARAMETERS['EPOCHS']} epochs of training")
    for key in ("test accuracy", "test accuracy with test-time augmentation", "seconds per epoch",
                "seconds of training in all", "2.1 myLinear mean |diff| after", "3.1 myConv2d mean |diff| after",
                "3.1 myConv2dFast mean |diff| after", "3.2 time ratio own/default (means), own, Eq. 4 loop, batch 20",
                "3.2 time ratio own/default (means), own, im2col", "3.4 Grad-CAM max |from scratch - captum|"):
        assert key in text, key
    conclusions = cell_text(cell_running(notebook, "largest_error = max("))
    assert "test accuracy after 4 epochs" in conclusions and "with test-time augmentation" in conclusions
    assert re.search(r"the slowest is own, (Eq\. 4 loop|im2col), batch (20|256)\.", conclusions)


def test_committed_notebook_is_clean():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert not [c.id for c in code if c.outputs or c.execution_count], "strip outputs before committing"
    parameters = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1
    lines = parameters[0].source.splitlines()
    assert lines[0] == "# @title Parameters"
    assignments = [line for line in lines[1:] if line.strip()]
    assert assignments and all(re.fullmatch(r"[A-Z_]+ = .+  # @param .+", line) for line in assignments)


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_ruff_passes_on_notebook():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(NOTEBOOK)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_second_run_finds_data_and_weights_on_drive(run, cifar_archive):
    first, work, drive = run
    second = execute(work, "reused.ipynb", colab_archive=cifar_archive, DRIVE_FOLDER=str(drive), REUSE_WEIGHTS=True,
                     EPOCHS=1, TIMING_SECONDS=0.01)
    assert [entry["call"] for entry in colab_log(work)] == ["drive.mount", "download", "drive.mount"]  # no download
    assert "loaded the weights of an earlier run" in cell_text(cell_running(second, "if REUSE_WEIGHTS and WEIGHTS_PATH.exists()"))
    accuracy_line = [cell_text(cell_running(nb, "test_acc_mirror = accuracy(")).splitlines()[0]
                     for nb in (first, second)]
    assert accuracy_line[0] == accuracy_line[1]  # the same weights, the same test accuracy and loss
    assert cell_images(cell_running(second, "plot_history(history)")) == 1  # the saved curves
    header = cell_text(cell_running(second, "print(summary_table(results))")).splitlines()[0]
    assert header.endswith(f"trained by an earlier run, {PARAMETERS['EPOCHS']} epochs of training")  # not EPOCHS=1


def test_failed_mount_warns_and_goes_on_with_the_local_disk(cifar_archive, tmp_path):
    """Only the cells up to loading the data: that is where a failed mount matters."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    last = next(i for i, c in enumerate(notebook.cells) if "train_set, test_set = load_cifar10(DATA_DIR)" in c.source)
    notebook.cells = notebook.cells[:last + 1]
    nbformat.write(notebook, tmp_path / "head.ipynb")
    drive = tmp_path / "content" / "drive" / "MyDrive" / "assignment2_convnets"
    executed = execute(tmp_path, "mount-failed.ipynb", notebook=tmp_path / "head.ipynb", colab_archive=cifar_archive,
                       env=[("COLAB_STANDIN_MOUNT_ERROR", "mount failed")], DRIVE_FOLDER=str(drive))
    cell = cell_running(executed, "WORK_DIR = mount_drive(DRIVE_FOLDER)")
    warning = cell_text(cell, "stderr")
    local = (tmp_path / "outputs").resolve()
    assert "Google Drive could not be mounted (ValueError: mount failed)" in warning
    assert f"will live in {local}, on this runtime's local disk, and be lost when the runtime resets" in warning
    assert f"dataset folder: {local / 'data'}" in cell_text(cell)
    assert (local / "data" / "cifar-10-batches-py" / "test_batch").exists() and not drive.exists()
