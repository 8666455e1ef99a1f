"""Load the functions and classes of the notebook, so that tests and benchmarks use the notebook's own code.

Only the definitions of each code cell run: imports, `def`, `class` and assignments of constants.
Everything else (mounting Drive, loading data, training, plotting) is skipped, so loading takes a second.
"""
import ast
import linecache
import types
from pathlib import Path

import nbformat

NOTEBOOK = Path(__file__).resolve().parent.parent / "assignment2_convnets.ipynb"


# What a constant may be made of: literals, containers of them, and arithmetic on them (3 * 25 + 1, 2**20).
_CONSTANT_PARTS = (ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.BinOp, ast.UnaryOp, ast.operator,
                   ast.unaryop, ast.Load)


def _is_definition(node):
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
        return True
    return isinstance(node, ast.Assign) and all(isinstance(part, _CONSTANT_PARTS) for part in ast.walk(node.value))


def _segment(source, node):
    # The node's source lines, its decorators included (ast.get_source_segment starts at `def` and drops them).
    lines = source.splitlines(keepends=True)
    start = min([node.lineno] + [decorator.lineno for decorator in getattr(node, "decorator_list", [])])
    return "".join(lines[start - 1:node.end_lineno])


def definitions_source(path=NOTEBOOK):
    """The definition statements of every code cell of the notebook at `path`, as one Python source."""
    notebook = nbformat.read(path, as_version=4)
    parts = []
    for cell in notebook.cells:
        if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
            continue
        tree = ast.parse(cell.source)
        parts += [_segment(cell.source, node) for node in tree.body if _is_definition(node)]
    return "\n\n".join(parts)


def load_notebook(path=NOTEBOOK):
    """A module whose attributes are the notebook's imports, functions, classes and constants."""
    source = definitions_source(path)
    filename = f"<definitions of {Path(path).name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)  # for tracebacks
    module = types.ModuleType("assignment2_convnets")
    module.__file__ = str(path)
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 (the project's own notebook)
    return module
