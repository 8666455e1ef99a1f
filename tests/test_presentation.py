"""The committed notebook as a presentation: each task's answer in sight, helpers collapsed, short cells, few words,
no typed-in results, and the set-up in the order it must run."""
import re

import nbformat
import pytest
from notebook_code import NOTEBOOK

POINTS = {"1.0": None, "1.1": "0.1", "1.2": "0.4", "2.1": "0.3", "3.1": "0.4", "3.2": "0.2", "3.3": "0.3", "3.4": "0.3"}
# The code a TA grades: it must stay visible, never in a collapsed cell.
ANSWERS = ("WORK_DIR = mount_drive(", "load_cifar10(DATA_DIR)", "class ConvNet(", "def train_one_epoch(", "def fit(",
           "class myLinear(", "def difference_before_and_after_copy(", "class myConv2d(", "class myConv2dFast(",
           "def compare_layers(", "load_state_dict(trained_weights)", "def forward_times_ms(",
           "def capture_feature_maps(", "def minmax_per_channel(", "def gradcam_captum(", "def gradcam_from_scratch(")
MAX_CODE_LINES, MAX_WORDS = 40, 2300
# A number with a unit of measurement, a percentage or a speed-up: a measured result, which the text must not type.
MEASURED = re.compile(r"\d[\d,.]*\s*(%|per ?cent|[kKMG]i?B\b|ms\b|µs\b|s\b|seconds?\b|minutes?\b|x\b|×(?!\s*\d)|"
                      r"times\b)")


@pytest.fixture(scope="module")
def cells():
    return nbformat.read(NOTEBOOK, as_version=4).cells


def collapsed(cell):
    return cell.metadata.get("jupyter", {}).get("source_hidden", False)


def markdown(cells):
    return [c.source for c in cells if c.cell_type == "markdown"]


def test_no_code_cell_is_longer_than_40_lines(cells):
    long = {c.source.splitlines()[0]: len(c.source.splitlines()) for c in cells
            if c.cell_type == "code" and len(c.source.splitlines()) > MAX_CODE_LINES}
    assert not long, f"split these cells: {long}"


def test_collapsed_cells_are_helpers_with_a_title(cells):
    """Colab shows a `# @title ... { display-mode: "form" }` cell as its title; JupyterLab honours source_hidden.
    Both or neither, and never on a cell that holds a task's answer."""
    for cell in (c for c in cells if c.cell_type == "code"):
        first = cell.source.splitlines()[0]
        form = first.startswith("# @title ") and first.endswith('{ display-mode: "form" }')
        assert form == collapsed(cell), first
    helpers = [c for c in cells if collapsed(c)]
    assert len(helpers) >= 15
    for answer in ANSWERS:
        holding = [c for c in cells if c.cell_type == "code" and answer in c.source]
        assert holding, f"no cell holds {answer!r}"
        assert not any(collapsed(c) for c in holding), f"{answer!r} is a task's answer: keep it visible"


def test_each_task_opens_with_its_points_and_what_it_asks(cells):
    texts = markdown(cells)
    contents = texts[0]
    for task, points in POINTS.items():
        sections = [t for t in texts if t.startswith(f'<a id="{task}"></a>\n## {task} ')]
        assert len(sections) == 1, task
        heading = sections[0].split("\n")[1]
        assert heading.endswith("· no points of its own" if points is None else f"· {points} points"), heading
        opening = sections[0].split("\n\n")[1]
        assert opening.startswith("**The task asks:**") and "**Answer:**" in opening, task
        assert re.search(rf"^\| \[{re.escape(task)} [^]]+\]\(#{re.escape(task)}\) \| {points or '–'} \|", contents,
                         re.MULTILINE), f"the contents table lacks {task} with its points"
    assert "| [Summary](#summary) | 2.0 |" in contents  # 0.5 + 0.3 + 1.2 points in all


def test_extras_sit_under_beyond_the_task_headings(cells):
    subheadings = [line for text in markdown(cells) for line in text.splitlines() if line.startswith("### ")]
    assert subheadings and all(line.startswith("### Beyond the task: ") for line in subheadings), subheadings


def test_markdown_fits_the_word_budget(cells):
    words = sum(len(re.findall(r"\S+", text)) for text in markdown(cells))
    assert words <= MAX_WORDS, f"{words} words of markdown; the budget is {MAX_WORDS}"


def test_markdown_types_no_measured_figure(cells):
    """Every result is printed by the cell that measured it; the text may define units, never state a result."""
    found = [(m.group(0), text[max(0, m.start() - 40):m.end() + 10]) for text in markdown(cells)
             for m in MEASURED.finditer(text)]
    assert not found, found


def test_measured_figure_pattern_catches_what_it_should():
    for sentence in ("the archive is 163 MB", "about 0.9 GB through the mount", "it took 37.7 s", "75.3 %",
                     "3.5 times faster", "1.9x the default", "a 2 × speed-up", "60 MB", "took 12 ms"):
        assert MEASURED.search(sentence), sentence
    for sentence in ("32×32 pixels", "16 × 5 × 5 = 400", "conv 8@5×5", "0.4 points", "Eq. 4", "first 5 channels",
                     "about 7 significant digits", "3 images"):
        assert not MEASURED.search(sentence), sentence


def test_cublas_is_configured_before_torch_is_imported(cells):
    """CUBLAS_WORKSPACE_CONFIG is read when CUDA starts; set after `import torch` in a kernel that already started
    CUDA (cells run again), it would change nothing."""
    code = [c.source for c in cells if c.cell_type == "code"]
    imports_torch = re.compile(r"^(import torch|from torch)", re.MULTILINE)
    first_torch = next(i for i, source in enumerate(code) if imports_torch.search(source))
    setting = next(i for i, source in enumerate(code) if "CUBLAS_WORKSPACE_CONFIG" in source)
    assert setting < first_torch or (setting == first_torch and code[setting].index("CUBLAS_WORKSPACE_CONFIG")
                                     < imports_torch.search(code[setting]).start())
    assert setting <= 2  # the parameters, then this


def test_parameters_are_checked_before_anything_runs(cells):
    code = [c.source for c in cells if c.cell_type == "code"]
    check = next(i for i, source in enumerate(code) if source.startswith("check_parameters("))
    assert check < next(i for i, source in enumerate(code) if "mount_drive(DRIVE_FOLDER)" in source)
    assert check < next(i for i, source in enumerate(code) if "history = fit(" in source)
