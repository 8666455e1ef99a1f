"""Run the whole notebook top to bottom in a real Jupyter kernel on the small fixture, and check what it shows.

The main run takes the notebook's Colab branch: a stand-in `google.colab` package (tests/colab_standin) is imported
at kernel start, as Colab does before the first cell, and its `drive.mount` records each call. "Downloading"
CIFAR-10 copies an archive of the small fixture (the harness replaces torchvision's `download_url`, and records
each call), so the whole path from an empty Drive folder to a trained network runs offline.
"""
import ast
import base64
import importlib
import importlib.metadata
import importlib.util
import json
import math
import re
import struct
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


def execute(work, name, notebook=NOTEBOOK, colab_archive=None, env=(), startup="", **parameters):
    """Run `notebook` in a Jupyter kernel with working folder `work`; return the executed notebook. With
    `colab_archive`, the kernel looks like Colab's and downloads that archive in place of CIFAR-10; `startup` is code
    the kernel runs before the first cell.

    The kernel never sees a GPU (CUDA_VISIBLE_DEVICES is empty), so the run takes the CPU path on every machine and
    the assertions below, which read what that path prints, hold on a GPU machine as in CI."""
    startup_dir = work / f"ipython-{name}" / "profile_default" / "startup"
    startup_dir.mkdir(parents=True, exist_ok=True)
    (startup_dir / "00-offline-cifar.py").write_text(OFFLINE_PATCH + "\n" + startup)
    if colab_archive:
        (startup_dir / "01-colab.py").write_text(COLAB_STARTUP.format(standin=str(STANDIN), archive=str(colab_archive)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(startup_dir.parents[1]))
        mp.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        mp.setenv("COLAB_STANDIN_LOG", str(work / "colab.log"))
        mp.setenv("CUDA_VISIBLE_DEVICES", "")
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
    assert sorted(p.name for p in (drive / "data").iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert (drive / "convnet_cifar10.pt").exists() and (drive / "convnet_cifar10_history.json").exists()
    assert not (work / "outputs").exists()
    text = cell_text(cell_running(notebook, "WORK_DIR = (mount_drive(DRIVE_FOLDER)"))
    assert f"Google Drive: mounted\ndataset folder: {drive / 'data'}" in text


def test_environment_and_missing_gpu_are_reported(run):
    notebook = run[0]
    setup = cell_running(notebook, 'device = torch.device("cuda" if DEVICE')
    versions = {name: importlib.import_module(name).__version__ for name in ("torch", "captum")}
    said = ", ".join(f"{name} {version}" for name, version in versions.items()) + "; running on CPU ("
    assert said in cell_text(setup)
    warning = cell_text(setup, "stderr")
    assert warning.startswith("Warning: No GPU found") and "Runtime ▸ Change runtime type ▸ T4 GPU" in warning
    assert "warn(" not in warning  # no echo of the line that raised it


def test_captum_pin_is_the_version_the_tests_run_with(nb):
    assert nb.CAPTUM_VERSION == importlib.metadata.version("captum")
    requirements = (NOTEBOOK.parent / "requirements.txt").read_text()
    assert f"captum=={nb.CAPTUM_VERSION}" in requirements.split()
    # the torch floor allows no version that the pinned captum refuses
    captum_needs = next(re.fullmatch(r"torch\s*>=\s*([\d.]+)", r).group(1) for r in importlib.metadata.requires("captum")
                        if re.fullmatch(r"torch\s*>=\s*([\d.]+)", r))
    floor = re.search(r"^torch>=([\d.]+)", requirements, re.MULTILINE).group(1)
    assert tuple(map(int, floor.split("."))) >= tuple(map(int, captum_needs.split(".")))


def test_training_learns_and_is_reported(run):
    notebook, _, drive = run
    history = json.loads((drive / "convnet_cifar10_history.json").read_text())
    assert len(history["train_loss"]) == PARAMETERS["EPOCHS"]
    assert all(math.isfinite(v) for v in history["train_loss"] + history["val_loss"])
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_acc"][-1] > 0.3  # chance is 0.1
    assert cell_images(cell_running(notebook, "plot_history(history)")) == 1
    text = cell_text(cell_running(notebook, "test_logits_plain = predict_logits("))
    plain = number_after(text, "test accuracy:")
    assert plain > 30 and f"on {N_TEST} test images" in text
    gap = number_after(text, "training minus validation:")  # from the history, with its sign
    assert gap == pytest.approx(100 * (history["train_acc"][-1] - history["val_acc"][-1]), abs=0.01)
    above = sum(v > t for v, t in zip(history["val_acc"], history["train_acc"]))
    assert f"epochs with validation accuracy above training accuracy: {above} of 4" in text
    lowest = min(history["val_loss"])
    assert (f"validation loss: lowest {lowest:.4f} in epoch {history['val_loss'].index(lowest) + 1} of 4, last "
            f"{history['val_loss'][-1]:.4f}") in text
    text = cell_text(cell_running(notebook, "test_acc_mirror = accuracy("))
    assert number_after(text, "test accuracy with one view:") == plain
    mirror = number_after(text, "with the image and its mirror image (2 views):")
    every_view = number_after(text, "with every shift up to 2 px, mirrored or not (50 views):")
    assert mirror > 30 and every_view > 30


def test_plain_text_training_log(run):
    """One line per few epochs and at the last, so that an exported copy shows the training without widgets."""
    text = cell_text(cell_running(run[0], "history = fit("))
    epochs = [int(m) for m in re.findall(r"^epoch\s+(\d+)/4: train loss [0-9.]+ acc [0-9.]+% \| val loss [0-9.]+ "
                                         r"acc [0-9.]+% \| [0-9.]+ s elapsed$", text, re.MULTILINE)]
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


def test_network_summary_printed(run):
    text = cell_text(cell_running(run[0], "print_layer_table(model)"))
    assert re.search(r"total\s+64,058  \(ASSIGNMENT_PARAMETERS, the assignment's layers counted by hand as \(inputs "
                     r"per output \+ bias\) x outputs: 64,058\)", text)


def test_own_layer_checks_report_small_differences(run):
    notebook = run[0]
    text = cell_text(cell_running(notebook, "my_linear = nn.Linear(8, 16), myLinear(8, 16)"))
    assert number_after(text, "mean |nn.Linear(x) - myLinear(x)| before copying the parameters:") > 1e-2
    assert number_after(text, "mean |nn.Linear(x) - myLinear(x)| after copying them:") < 1e-6
    text = cell_text(cell_running(notebook, "conv, my_conv = nn.Conv2d(3, 8, 5), myConv2d(3, 8, 5)"))
    assert number_after(text, "on 64 images, before copying the parameters:") > 1e-2
    assert number_after(text, "on 64 images, after copying them:") < 1e-6
    text = cell_text(cell_running(notebook, "conv_reports = {}"))
    rows = re.findall(r"^(myConv2d(?:Fast)?\(.*\))\s+([0-9.e+-]+)\s+([0-9.e+-]+)\s+([0-9.e+-]+)\s+([0-9.e+-]+|-)\s+(yes|NO)$",
                      text, re.MULTILINE)
    assert len(rows) == 8, text
    assert rows[1][0] == "myConv2d(kernel_size=5, padding=2)"  # Eq. 4 as written: the kernel centred on the pixel
    assert rows[3][0] == "myConv2d(kernel_size=(2, 3), stride=(2, 1), padding=(1, 0), bias=False)" and rows[3][4] == "-"
    assert max(float(row[1]) for row in rows) < 1e-5 and {row[5] for row in rows} == {"yes"}
    assert max(float(v) for row in rows for v in row[2:5] if v != "-") < 1e-4
    text = cell_text(cell_running(notebook, "torch.autograd.gradcheck"))
    assert text.count("gradcheck passed = True") == 2


def timing_rows(text):
    rows = re.findall(r"^\s*(20|256)\s+(default|own, Eq\. 4 loop|own, im2col)\s+([0-9.]+)\s+([0-9.]+|–)"
                      r"\s+(\d+)\s*([0-9.]+x)?$", text, re.MULTILINE)
    means = {(batch, name): float(mean) for batch, name, mean, *_ in rows}
    for batch, name, mean, std, blocks, ratio in rows:
        assert (std == "–") == (blocks == "1")  # one block has no spread to give
        assert std == "–" or float(std) >= 0
        if name != "default":  # the ratio printed is the ratio of the means
            assert float(ratio[:-1]) == pytest.approx(float(mean) / means[(batch, "default")], abs=0.01)
    return rows


def test_own_networks_agree_and_are_timed(run):
    notebook = run[0]
    text = cell_text(cell_running(notebook, "own_model.load_state_dict(trained_weights)"))
    accs = re.findall(r"^(default|own) +network, accuracy on the first 20 test images: (\d+)%$", text, re.MULTILINE)
    assert [name for name, _ in accs] == ["default", "own"] and accs[0][1] == accs[1][1]  # same weights
    assert number_after(text, "the own network predicts the default's class for") == 100.0
    assert number_after(text, "largest |logit difference|") < 1e-4
    text = cell_text(cell_running(notebook, "print_timing_table(timings, device)"))
    rows = timing_rows(text)
    assert [(batch, name) for batch, name, *_ in rows] == [(batch, name) for batch in ("20", "256")
                                                           for name in ("default", "own, Eq. 4 loop")]
    assert "per call" not in text and "per image" not in text  # measurements, no reading that a device can falsify
    text = cell_text(cell_running(notebook, "print_timing_table(all_timings, device)"))
    assert number_after(text, "the im2col network predicts the default's class on") >= 99.0
    means = {(batch, name): float(mean) for batch, name, mean, *_ in timing_rows(text)}
    growth = re.fullmatch(r"from 20 to 256 images \(12.8x as many\), the mean time grows ([0-9.]+)x for default, "
                          r"([0-9.]+)x for own, Eq. 4 loop, ([0-9.]+)x for own, im2col", text.splitlines()[-1])
    for name, grown in zip(("default", "own, Eq. 4 loop", "own, im2col"), growth.groups()):  # from the table's means
        assert float(grown) == pytest.approx(means[("256", name)] / means[("20", name)], abs=0.02)
    assert len(timing_rows(text)) == 6, text


def test_feature_maps_and_gradcam_are_drawn(run):
    notebook = run[0]
    cell = cell_running(notebook, "plot_feature_maps(fmap_images")
    assert cell_images(cell) == 1
    assert cell_images(cell_running(notebook, "plot_filters(model.conv1.weight")) == 1
    assert cell_images(cell_running(notebook, "plot_gradcam(test_x[gradcam_idx]")) == 1
    assert cell_images(cell_running(notebook, "both_maps = torch.cat(")) == 1  # Part B: both maps
    text = cell_text(cell_running(notebook, "plot_stretch_and_aligned("))
    assert "centred on input pixel 6.5 + 2*q: the centres span pixels 6.5 to 24.5" in text
    assert number_after(text, "stretching moves them by up to") == 5.4  # (q + 0.5) 3.2 - 0.5 against 6.5 + 2 q
    findings = cell_text(cell_running(notebook, "print(gradcam_findings("))
    assert re.fullmatch(r"share of a map's heat in the central 6x6 of conv2's 10x10 cells, all 300 test images:\n"
                        r"  \d+% for the \d+ correct, \d+% for the \d+ misclassified; spread evenly: 36%\n"
                        r"misclassified images whose predicted- and true-class maps peak in the same or neighbouring "
                        r"cells:\n  \d+ of \d+ \(the \d+ less \d+ whose true-class map is zero\): [0-9.]+%; two unrelated peaks, by "
                        r"chance: 7.8%\n", findings), findings
    findings = cell_text(cell_running(notebook, "print(*feature_map_findings("))
    assert re.fullmatch(r"(conv\d \+ ReLU: values set to zero by the ReLU: \d+% on the 3 images drawn, \d+% on 300 "
                        r"test images; channels zero on all 300: \d+ of (8|16)\n){2}", findings), findings
    text = cell_text(cell_running(notebook, "ours = gradcam_from_scratch("))
    assert number_after(text, "max |from scratch - captum| =") < 1e-5


def checklist_rows(notebook):
    text = cell_text(next(c for c in notebook.cells if "for task, points, passed, figure in" in c.source))
    return text, {task: (points, verdict, figure) for task, points, verdict, figure in
                  re.findall(r"^(\d\.\d)\s+(–|\d\.\d)\s+(ok|CPU|local|CHECK)\s+(.+)$", text, re.MULTILINE)}


def test_summary_is_a_checklist_in_the_assignments_order(run):
    """A TA grades from the summary: each item with its points, a verdict and this run's figure."""
    text, rows = checklist_rows(run[0])
    table = cell_text(cell_running(run[0], "print(results_table(results))"))
    assert list(rows) == ["1.0", "1.1", "1.2", "2.1", "3.1", "3.2", "3.3", "3.4"]
    assert [points for points, _, _ in rows.values()] == ["–", "0.1", "0.4", "0.3", "0.4", "0.2", "0.3", "0.3"]
    assert rows["1.2"][1] == "CPU" and rows["1.2"][2].startswith("epochs: 4 on CPU (")  # the tests run on a CPU
    assert all(verdict == "ok" for task, (_, verdict, _) in rows.items() if task != "1.2"), text
    assert "800 / 200 / 300 images" in rows["1.0"][2] and "64,058 parameters" in rows["1.1"][2]
    linear = re.search(r"before copying ([0-9.e+-]+), after ([0-9.e+-]+) \(should be < 1e-6\)", rows["2.1"][2])
    assert float(linear.group(1)) > 1e-2 and float(linear.group(2)) < 1e-6
    assert re.fullmatch(r"accuracy on 20 test images: default (\d+)%, own \1%; time own / default [0-9.]+x \(20 "
                        r"images\), [0-9.]+x \(256\)", rows["3.2"][2])
    assert rows["3.3"][2] == "3 x 4 x 5 maps (images x layers x channels) in [0, 1]"
    assert rows["3.4"][2] == ("Grad-CAM of 10 correct and 10 misclassified test images; of their maps, zero "
                              "everywhere: 0 (should be 0)")
    assert text.splitlines()[0].startswith("SEED = 0; weights trained in this run")
    for key in ("epochs", "seconds of training", "test accuracy", "test accuracy with test-time augmentation",
                "myConv2dFast mean |diff| after copy", "own, im2col / default time ratio, batch 256",
                "Grad-CAM max |from scratch - captum|"):
        assert re.search(rf"^  {re.escape(key)}  +\S", table, re.MULTILINE), key


def test_every_figure_fits_a_laptop_screen(run):
    """Each figure as the notebook draws it (the PNG in the executed notebook) is at most 1,400 x 1,000 pixels."""
    sizes = [struct.unpack(">II", base64.b64decode(out.data["image/png"])[16:24]) for cell in run[0].cells
             for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert len(sizes) == 8  # curves, feature maps, Grad-CAM; explorer, confusion, filters, stretch, true class
    too_large = [(w, h) for w, h in sizes if w > 1400 or h > 1000]
    assert not too_large, too_large


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


def head_of_notebook(folder, last_snippet):
    """The notebook's cells up to the one that runs `last_snippet`, written to `folder`; returns its path."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    last = next(i for i, c in enumerate(notebook.cells) if last_snippet in c.source)
    notebook.cells = notebook.cells[:last + 1]
    nbformat.write(notebook, folder / "head.ipynb")
    return folder / "head.ipynb"


def test_second_run_finds_data_and_weights_on_drive(run, cifar_archive):
    """Part A only, up to the checklist: that is where the saved weights and history matter. The form's split
    differs (SEED, TRAIN_SUBSET), so its training images differ too: the saved normalization keeps the accuracy."""
    first, work, drive = run
    second = execute(work, "reused.ipynb", notebook=head_of_notebook(work, "for task, points, passed, figure in"),
                     colab_archive=cifar_archive, DRIVE_FOLDER=str(drive), REUSE_WEIGHTS=True, EPOCHS=1,
                     TIMING_SECONDS=0.01, SEED=1, TRAIN_SUBSET=300)
    assert [entry["call"] for entry in colab_log(work)] == ["drive.mount", "download", "drive.mount"]  # no download
    training = cell_running(second, "reuse_saved_run(model, WEIGHTS_PATH")
    assert "weights loaded from" in cell_text(training) and "trained by an earlier run" in cell_text(training)
    assert "the saved weights were trained on CPU (" in cell_text(training)  # the kernels never see a GPU
    assert "with EPOCHS = 4, BATCH_SIZE = 64, LEARNING_RATE = 0.05, SEED = 0, TRAIN_SUBSET = 0, VAL_SIZE = 200" in \
        cell_text(training)
    assert cell_text(training, "stderr").startswith("Warning: REUSE_WEIGHTS: the form's EPOCHS = 1, SEED = 1, "
                                                    "TRAIN_SUBSET = 300 differ from them")
    accuracy_line = [cell_text(cell_running(nb, "test_logits_plain = predict_logits(")).splitlines()[-1]
                     for nb in (first, second)]
    assert accuracy_line[0].startswith("test accuracy:")
    assert accuracy_line[0] == accuracy_line[1]  # the same weights, the same test accuracy and loss
    assert cell_images(cell_running(second, "plot_history(history)")) == 1  # the saved curves
    training = checklist_rows(second)[1]["1.2"][2]  # the saved history: its epochs and its device, not EPOCHS=1
    assert training.startswith(f"epochs: {PARAMETERS['EPOCHS']} on CPU")


def test_failed_mount_warns_and_goes_on_with_the_local_disk(cifar_archive, tmp_path):
    """Only the cells up to loading the data: that is where a failed mount matters."""
    head = head_of_notebook(tmp_path, "train_set, test_set = load_cifar10(DATA_DIR)")
    drive = tmp_path / "content" / "drive" / "MyDrive" / "assignment2_convnets"
    executed = execute(tmp_path, "mount-failed.ipynb", notebook=head, colab_archive=cifar_archive,
                       env=[("COLAB_STANDIN_MOUNT_ERROR", "mount failed")], DRIVE_FOLDER=str(drive))
    cell = cell_running(executed, "WORK_DIR = (mount_drive(DRIVE_FOLDER)")
    warning = cell_text(cell, "stderr")
    local = (tmp_path / "outputs").resolve()
    assert "Google Drive could not be mounted (ValueError: mount failed)" in warning
    assert f"data and weights go to {local}, on this runtime's disk, lost when it resets" in warning
    assert f"dataset folder: {local / 'data'}" in cell_text(cell)
    assert (local / "data" / "cifar-10-batches-py" / "test_batch").exists() and not drive.exists()


def test_explorer_draws_its_default_image(run):
    """Headless, the explorer form draws its defaults like any other cell: test image 0, the predicted class."""
    cell = cell_running(run[0], "figure, line = explore(")
    line = cell_text(cell).strip()
    assert re.fullmatch(r"test image 0: true class \w+; predicted \w+ \(\d+%\); the network from the own layers "
                        r"predicts the same; next misclassified test image: \d+", line), line
    assert cell_images(cell) == 1


def test_the_cuda_graph_section_skips_on_the_cpu_and_shows_wall_times(run):
    """Part B's launch-overhead section on a CPU: the wall times of a training step and of both forward passes,
    no launch counts, and a line for each graph part saying why it is skipped; the notebook goes on."""
    notebook = run[0]
    profile = cell_text(cell_running(notebook, "print_profile(profile, device)"))
    assert re.search(r"^training step, batch 64\s+[0-9.]+$", profile, re.MULTILINE), profile
    assert re.search(r"^forward, own \(Eq. 4\), batch 20\s+[0-9.]+$", profile, re.MULTILINE)
    assert "launches" not in profile.splitlines()[1] and "no kernel launches to count or to save" in profile
    for what in ("the own network as a CUDA graph", "training with the step as a CUDA graph"):
        assert f"{what}: needs CUDA, and this run is on the CPU" in "".join(
            cell_text(c) for c in notebook.cells if c.cell_type == "code")
    assert cell_text(cell_running(notebook, "print(results_table(results))"))  # the cells after it ran


def test_a_diverging_learning_rate_stops_the_run_and_saves_nothing(tiny_cifar, tmp_path):
    """LEARNING_RATE 100 blows the loss up in the first epochs: the training cell stops with an error that names
    the rate, the epoch and the default, before any weights are saved where a later run would reuse them."""
    head = head_of_notebook(tmp_path, "history = fit(model, (train_x, train_y)")
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute(tmp_path, "diverged.ipynb", notebook=head, DATA_DIR=str(tiny_cifar), LEARNING_RATE=100.0, EPOCHS=3)
    assert err.value.ename == "TrainingDiverged"
    assert re.search(r"the mean training loss of epoch \d is \S+, above 4.61, .* LEARNING_RATE = 100 is too large: "
                     r"lower it \(the default is 0.1\)", err.value.evalue), err.value.evalue
    assert not list((tmp_path / "outputs").glob("convnet_cifar10*"))


def test_an_output_folder_that_cannot_be_written_stops_the_run_before_the_data(tiny_cifar, tmp_path):
    """Outside Colab the notebook writes to outputs/ in the folder it runs from; here that name is taken by a file,
    so no folder can be made there. The mount cell stops with the folder and what chose it, before any data is read
    or any training is lost."""
    head = head_of_notebook(tmp_path, "train_set, test_set = load_cifar10(DATA_DIR)")
    (tmp_path / "outputs").write_text("a file, not a folder")
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute(tmp_path, "unwritable.ipynb", notebook=head, DATA_DIR=str(tiny_cifar))
    assert err.value.ename == "PermissionError"
    assert re.match(rf"{re.escape(str(tmp_path / 'outputs'))} cannot be written \(FileExistsError: .*\); running in "
                    rf"{re.escape(str(tmp_path))} chose it", err.value.evalue), err.value.evalue
    executed = nbformat.read(tmp_path / "unwritable.ipynb", as_version=4)
    assert "training split" not in "".join(cell_text(c) for c in executed.cells if c.cell_type == "code")


def copy_of_drive(drive, copy):
    """A Drive folder holding the main run's weights and history, and its data by a link."""
    copy.mkdir()
    for name in ("convnet_cifar10.pt", "convnet_cifar10_history.json"):
        (copy / name).write_bytes((drive / name).read_bytes())
    (copy / "data").symlink_to(drive / "data")
    return copy


def test_damaged_saved_weights_are_named_kept_and_trained_anew(run, cifar_archive, tmp_path):
    """REUSE_WEIGHTS with a weights file cut short (a copy to Drive interrupted): a warning names the file and says
    what is wrong, the run trains anew, and the damaged pair is kept under new names, not deleted."""
    _, _, drive = run
    copy = copy_of_drive(drive, tmp_path / "drive")
    weights = copy / "convnet_cifar10.pt"
    damaged = weights.read_bytes()[:5000]
    weights.write_bytes(damaged)
    executed = execute(tmp_path, "damaged.ipynb", notebook=head_of_notebook(tmp_path, "test_accuracy = accuracy("),
                       colab_archive=cifar_archive, DRIVE_FOLDER=str(copy), REUSE_WEIGHTS=True, EPOCHS=2)
    training = cell_running(executed, "reuse_saved_run(model, WEIGHTS_PATH")
    warning = cell_text(training, "stderr")
    assert re.match(rf"Warning: REUSE_WEIGHTS: {re.escape(str(weights))} cannot be used: it is cut short, or not "
                    r"PyTorch's \((RuntimeError|OSError): .*\)\. Training anew", warning), warning
    assert "Training anew; the files there are kept, renamed, when the new ones are saved" in warning
    kept = sorted(p.name for p in copy.glob("*.previous-*"))
    assert [re.sub(r"\d{8}-\d{6}", "T", name) for name in kept] == ["convnet_cifar10.previous-T.pt",
                                                                   "convnet_cifar10_history.previous-T.json"]
    assert (copy / kept[0]).read_bytes() == damaged  # kept as it was
    assert f"the earlier run's files kept as {kept[0]}, {kept[1]}" in cell_text(training)
    assert len(json.loads((copy / "convnet_cifar10_history.json").read_text())["train_loss"]) == 2  # trained anew


# In the kernel: every write of a new file's `.partial` copy fails as a full Drive or disk fails it.
FULL_DISK = """
import errno, pathlib
_write_bytes = pathlib.Path.write_bytes


def _full_disk(self, data):
    if self.name.endswith(".partial"):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))
    return _write_bytes(self, data)


pathlib.Path.write_bytes = _full_disk
"""


def test_a_full_drive_loses_nothing_and_the_run_goes_on(run, cifar_archive, tmp_path):
    """ENOSPC when the new weights are written: the earlier run's files stay under their own names, no partial file
    is left, the warning names the folder and says it is full, and Part A runs to its checklist with the network
    trained in memory, saying that it was not saved."""
    _, _, drive = run
    copy = copy_of_drive(drive, tmp_path / "drive")
    before = {path.name: path.read_bytes() for path in copy.glob("convnet_cifar10*")}
    head = head_of_notebook(tmp_path, "for task, points, passed, figure in")
    executed = execute(tmp_path, "full.ipynb", notebook=head, colab_archive=cifar_archive, startup=FULL_DISK,
                       DRIVE_FOLDER=str(copy), EPOCHS=1, TIMING_SECONDS=0.01)
    training = cell_running(executed, "weights_source = save_training(")
    assert (f"Warning: the trained network was NOT saved: {copy} is full; the files there are untouched. This run goes "
            "on with the network in memory") in cell_text(training, "stderr")
    assert {path.name: path.read_bytes() for path in copy.glob("convnet_cifar10*")} == before  # and no .partial
    assert "weights trained in this run, NOT saved" in cell_text(training)
    assert checklist_rows(executed)[0].startswith("SEED = 0; weights trained in this run, NOT saved")
    assert len(checklist_rows(executed)[1]) == 8  # every task ran


def test_the_split_is_checked_against_the_images_that_are_there(tiny_cifar, tmp_path):
    """VAL_SIZE 2,000 passes against CIFAR-10's 50,000 training images, not against the 1,000 of this data folder:
    the run stops once they are loaded, before anything trains, naming the field, its value and the count."""
    head = head_of_notebook(tmp_path, "split_train_val(all_train_x")
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute(tmp_path, "split.ipynb", notebook=head, DATA_DIR=str(tiny_cifar), VAL_SIZE=2000)
    assert err.value.ename == "ValueError"
    assert err.value.evalue == "VAL_SIZE must be an integer from 1 to 999 (1,000 training images), got 2000"
