"""The committed notebook as a presentation: Part A the assignment alone, each answer in sight, helpers collapsed,
short cells, few words, no typed-in results, links that Colab follows, and the set-up in the order it must run."""
import ast
import io
import json
import re
import tokenize

import nbformat
import pytest
from conftest import CLASSES
from notebook_code import NOTEBOOK

POINTS = {"1.0": None, "1.1": "0.1", "1.2": "0.4", "2.1": "0.3", "3.1": "0.4", "3.2": "0.2", "3.3": "0.3", "3.4": "0.3"}
# The code a TA grades, in Part A, and the code Part B teaches: it must stay visible, never in a collapsed cell.
ANSWERS = ("def mount_drive(", "drive.mount(mount_point)", "WORK_DIR = (mount_drive(", "check_writable(WORK_DIR",
           "torchvision.datasets.CIFAR10(root, train=True, download=download)",
           "torchvision.datasets.CIFAR10(root, train=False, download=download)", "load_cifar10(DATA_DIR)",
           "split_train_val(all_train_x, all_train_y, VAL_SIZE", "make_normalize(train_x)", "class ConvNet(",
           "model = ConvNet().to(device)\nprint_layer_table(model)", "def evaluate(", "def train_one_epoch(", "def fit(", "history = fit(",
           "MAX_SHIFT = 2", "reuse_saved_run(model, WEIGHTS_PATH", "weights_source = save_training(", "class myLinear(",
           "def difference_before_and_after_copy(", "class myConv2d(", "load_state_dict(trained_weights)",
           "accuracy(logits[:20], test_y[:20])", "def forward_times_ms(", "def capture_feature_maps(",
           "def minmax_per_channel(", "plot_feature_maps(fmap_images", "def pick_correct_and_wrong(", "def gradcam_captum(",
           "LayerAttribution.interpolate(cams, size", "plot_gradcam(test_x",
           # what the student defends (issue 36): the initialization, the padding and output size, the recipe
           "def init_like_pytorch(", "def pad_input(", "F.pad(x, (pw, pw, ph, ph))", "def make_optimizer(",
           "def make_scheduler(", "nn.CrossEntropyLoss(label_smoothing=0.1)", "ASSIGNMENT_PARAMETERS = (3 * 25 + 1)",
           'device = torch.device("cuda" if DEVICE == "cuda"')
PART_B_ANSWERS = ("def tta_logits(", "def compare_layers(", "class myConv2dFast(", "def gradcam_from_scratch(",
                  "class GraphReadyTraining", "def fit_graphed(", "def graphed_forward(")
MAX_CODE_LINES, MAX_WORDS, PART_A_WORDS = 40, 2300, 1200
# Part A's code, counted as MAINTAINERS.md says: non-blank lines of every code cell before the Part B heading, comments
# and collapsed cells included; and of those, the lines a TA sees without opening a cell. The checklist cell's too.
PART_A_CODE_LINES, PART_A_VISIBLE_LINES, CHECKLIST_LINES = 600, 275, 25
CIFAR10_TEST_IMAGES = 10_000  # the official test split, which the explorer's slider spans
# A number with a unit of measurement, a percentage or a speed-up: a measured result, which the text must not type.
MEASURED = re.compile(r"\d[\d,.]*\s*(%|per ?cent|[kKMG]i?B\b|ms\b|µs\b|s\b|seconds?\b|minutes?\b|x\b|×(?!\s*\d)|"
                      r"times\b)")
FORM_TITLE = re.compile(r'# @title .+ \{ (run: "auto", )?display-mode: "form" \}')


@pytest.fixture(scope="module")
def cells():
    return nbformat.read(NOTEBOOK, as_version=4).cells


def collapsed(cell):
    return cell.metadata.get("jupyter", {}).get("source_hidden", False)


def markdown(cells):
    return [c.source for c in cells if c.cell_type == "markdown"]


def part_b_start(cells):
    starts = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and
              c.source.startswith("# Part B: beyond the assignment\n")]
    assert len(starts) == 1
    return starts[0]


def words(texts):
    return sum(len(re.findall(r"\S+", text)) for text in texts)


def test_no_code_cell_is_longer_than_40_lines(cells):
    long = {c.source.splitlines()[0]: len(c.source.splitlines()) for c in cells
            if c.cell_type == "code" and len(c.source.splitlines()) > MAX_CODE_LINES}
    assert not long, f"split these cells: {long}"


def test_collapsed_cells_are_helpers_with_a_title(cells):
    """Colab shows a `# @title ... { display-mode: "form" }` cell as its title (and its form); JupyterLab honours
    source_hidden. Both or neither, and never on a cell that holds a task's answer."""
    for cell in (c for c in cells if c.cell_type == "code"):
        first = cell.source.splitlines()[0]
        assert bool(FORM_TITLE.fullmatch(first)) == collapsed(cell), first
    assert len([c for c in cells if collapsed(c)]) >= 15
    for answer in ANSWERS + PART_B_ANSWERS:
        holding = [c for c in cells if c.cell_type == "code" and answer in c.source]
        assert holding, f"no cell holds {answer!r}"
        assert not any(collapsed(c) for c in holding), f"{answer!r} is an answer: keep it visible"
    part_b = part_b_start(cells)
    for answer in ANSWERS:
        assert any(answer in c.source for c in cells[:part_b]), f"{answer!r} belongs to Part A"


def test_no_subclass_of_torchvision_datasets_and_no_private_override(cells):
    """Task 1.0's answer is torchvision's CIFAR10 as it ships."""
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert not re.search(r"class \w+\(torchvision\.datasets\.", code) and "def _check_integrity" not in code


def test_each_task_opens_with_its_points_and_what_it_asks(cells):
    part_b = part_b_start(cells)
    texts = markdown(cells[:part_b])
    for task, points in POINTS.items():
        sections = [t for t in texts if t.startswith(f"## {task} ")]
        assert len(sections) == 1, task
        heading = sections[0].split("\n")[0]
        assert heading.endswith("· no points of its own" if points is None else f"· {points} points"), heading
        opening = sections[0].split("\n\n")[1]
        assert opening.startswith("**The task asks:**") and "**Answer:**" in opening, task
    order = [next(i for i, t in enumerate(texts) if t.startswith(f"## {task} ")) for task in POINTS]
    assert order == sorted(order), "the tasks in the assignment's order"
    assert any(t.startswith("## Checklist · 2.0 points in all") for t in texts)  # 0.5 + 0.3 + 1.2 points


def contents_table(cell):
    """The contents table, a row of links over a row of points: [(link text, cell id, points)]."""
    rows = [line.strip("|").split("|") for line in cell.source.splitlines() if line.startswith("| ")]
    assert len(rows) == 2, rows
    links = [re.fullmatch(r"\s*\[([^]]+)\]\(#scrollTo=([\w-]+)\)\s*", cell_text) for cell_text in rows[0]]
    assert all(links), rows[0]
    return [(link.group(1), link.group(2), points.strip()) for link, points in zip(links, rows[1], strict=True)]


def test_contents_links_point_at_the_cells_they_name(cells):
    """Colab follows only #scrollTo=<cell id> links (googlecolab/colabtools#3983), so the contents table links each
    task's heading cell by its id, kept both where nbformat and where Colab store it; under each link, the task's
    points, and for the checklist the total, not a task's."""
    contents = contents_table(cells[0])
    by_id = {c.id: c for c in cells}
    assert all(c.metadata.get("id") == c.id for c in cells)
    tasks = contents[:len(POINTS)]
    for (task, points), (text, target, shown) in zip(POINTS.items(), tasks, strict=True):
        assert text.startswith(f"{task} ") and by_id[target].source.startswith(f"## {task} "), task
        assert shown == (points or "–"), task
    (checklist, checklist_id, total), (part_b, part_b_id, _) = contents[len(POINTS):]
    assert checklist == "Checklist" and by_id[checklist_id].source.startswith("## Checklist") and total == "2.0 in all"
    assert part_b == "Part B" and by_id[part_b_id].source.startswith("# Part B: beyond the assignment")
    assert "Colab" in cells[0].source and "table of contents" in cells[0].source


def test_part_a_is_the_assignment_alone_and_part_b_names_the_task_each_extra_extends(cells):
    part_b = part_b_start(cells)
    part_a_headings = [line for text in markdown(cells[:part_b]) for line in text.splitlines() if line.startswith("#")]
    assert not [h for h in part_a_headings if "beyond" in h.lower()], part_a_headings
    part_b_headings = [line for text in markdown(cells[part_b:]) for line in text.splitlines()
                       if line.startswith("## ")]
    assert part_b_headings[:2] == ["## For the oral: questions a TA may ask", "## For the oral: any test image, or a photo"]
    extras = [h for h in part_b_headings[2:-1]]
    assert extras and all(re.match(r"## Beyond (\d\.\d): ", h).group(1) in POINTS for h in extras), extras
    assert extras[-1] == "## Beyond 3.2: launch overhead, and CUDA graphs"  # last: only it touches the GPU's state
    assert part_b_headings[-1] == "## Every figure of this run"


def test_the_oral_questions_point_at_cells_that_exist_and_quote_no_figure(cells):
    """A student who uploads only the notebook finds the questions in it; each answer is a link to the cell that
    prints or draws it, never a figure copied from another run."""
    oral = next(c.source for c in cells if "## For the oral: questions a TA may ask" in c.source)
    rows = [line for line in oral.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 6
    ids = {c.id for c in cells}
    for row in rows:
        targets = re.findall(r"\]\(#scrollTo=([\w-]+)\)", row)
        assert targets and set(targets) <= ids, row
        assert not MEASURED.search(row), row


def code_lines(cell):
    return sum(1 for line in cell.source.splitlines() if line.strip())


def test_part_a_fits_its_budgets(cells):
    part_a = cells[:part_b_start(cells)]
    assert words(markdown(part_a)) <= PART_A_WORDS
    code = [c for c in part_a if c.cell_type == "code"]
    assert sum(map(code_lines, code)) <= PART_A_CODE_LINES, f"{sum(map(code_lines, code))} code lines in Part A"
    visible = sum(code_lines(c) for c in code if not collapsed(c))
    assert visible <= PART_A_VISIBLE_LINES, f"{visible} visible code lines in Part A"
    checklist = next(c for c in code if "for task, points, passed, figure in" in c.source)
    assert code_lines(checklist) <= CHECKLIST_LINES


def test_the_explorer_is_a_colab_form_that_reruns_itself(cells):
    """In Colab, a form whose title carries run: "auto" reruns when a field changes; the slider spans the test
    split, EXPLAIN offers the predicted, the true and every class."""
    explorer = next(c for c in cells if c.cell_type == "code" and "figure, line = explore(" in c.source)
    lines = explorer.source.splitlines()
    assert lines[0] == '# @title Explore a test image, or a photo { run: "auto", display-mode: "form" }'
    assert lines[1] == f'TEST_INDEX = 0  # @param {{type:"slider", min:0, max:{CIFAR10_TEST_IMAGES - 1}, step:1}}'
    choices = json.loads(re.fullmatch(r'EXPLAIN = "predicted"  # @param (\[.*\])', lines[2]).group(1))
    assert choices == ["predicted", "true", *CLASSES]
    assert lines[3] == 'IMAGE_FILE = ""  # @param {type:"string"}'
    assert cells.index(explorer) > part_b_start(cells)


def test_markdown_fits_the_word_budget(cells):
    assert words(markdown(cells)) <= MAX_WORDS


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


def part_a_definitions(cells):
    """{name: (node, collapsed)} of every top-level function and class that Part A defines."""
    found = {}
    for cell in cells[:part_b_start(cells)]:
        if cell.cell_type == "code":
            found.update({node.name: (node, collapsed(cell)) for node in ast.parse(cell.source).body
                          if isinstance(node, (ast.FunctionDef, ast.ClassDef))})
    return found


def test_every_definition_of_part_a_states_its_contract(cells):
    """Every function and class of Part A has a docstring; the graded ones give the shapes in and out, as CS231n's
    layers.py does, and myConv2d's the output size."""
    definitions = part_a_definitions(cells)
    assert len(definitions) > 40
    assert not [name for name, (node, _) in definitions.items() if not ast.get_docstring(node)]
    for name in ("myLinear", "myConv2d", "ConvNet", "train_one_epoch", "fit", "evaluate", "predict_logits"):
        doc = ast.get_docstring(definitions[name][0])
        assert re.search(r"\((N|\.\.\.), ", doc), (name, doc)  # a shape: (N, 3, H, W), (..., c_in)
    assert "H' = (H + 2 P_h - K_h) // S_h + 1" in ast.get_docstring(definitions["myConv2d"][0])


def test_the_own_layers_compute_in_sight(cells):
    """forward (and the padding it calls) uses no function of a collapsed cell; only the argument checks of
    __init__ may sit in one. The classes and PyTorch's initialization are visible."""
    definitions = part_a_definitions(cells)
    hidden = {name for name, (_, is_collapsed) in definitions.items() if is_collapsed}
    for layer in ("myLinear", "myConv2d"):
        node, is_collapsed = definitions[layer]
        assert not is_collapsed
        for method in (m for m in node.body if isinstance(m, ast.FunctionDef) and m.name != "__init__"):
            called = {call.func.id for call in ast.walk(method) if isinstance(call, ast.Call)
                      and isinstance(call.func, ast.Name)}
            assert not called & hidden, (layer, method.name, called & hidden)
    assert not definitions["init_like_pytorch"][1] and not definitions["make_optimizer"][1]


def test_names_say_what_they_return(cells):
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert not re.search(r"def \w+_figures\(", code) and not re.search(r"\bPADDING\b", code)


def test_no_line_is_packed_past_120_columns(cells):
    """ruff's 120 columns; a Colab form's @param line, which cannot wrap, is the one exception."""
    long = [line for c in cells if c.cell_type == "code" for line in c.source.splitlines()
            if len(line) > 120 and "# @param" not in line]
    assert not long, long
    semicolons = [token.start for c in cells if c.cell_type == "code"
                  for token in tokenize.generate_tokens(io.StringIO(c.source).readline)
                  if token.type == tokenize.OP and token.string == ";"]
    assert not semicolons
