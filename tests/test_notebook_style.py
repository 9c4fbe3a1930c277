"""What a learner sees in the notebooks' code: short lines, no test markers, solutions as code that runs.

- code lines at most 88 characters (the width JupyterLab shows at 1280 px with the file browser open);
- nbval's markers are cell tags (``nbval-check-output``), not ``# NBVAL_...`` comments in the learner's code;
- every solution is a code cell tagged ``solution`` and collapsed (``jupyter.source_hidden``), so nbval runs
  it; no solution is Python inside a markdown fold-out, where it would never run;
- every exercise's check cell (tagged ``check``) comes after a learner's cell (tagged ``exercise``).
"""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
MAX_LINE = 88


def cells(path: Path):
    return json.loads(path.read_text())["cells"]


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_code_lines_fit_the_notebook_width(path):
    long = [f"cell {i}: {len(line)} chars: {line[:60]}..." for i, cell in enumerate(cells(path))
            if cell["cell_type"] == "code" for line in "".join(cell["source"]).splitlines() if len(line) > MAX_LINE]
    assert not long, f"{path.name}: lines over {MAX_LINE} characters:\n" + "\n".join(long)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_test_markers_are_tags_not_comments(path):
    marked = [i for i, cell in enumerate(cells(path)) if "NBVAL_" in "".join(cell["source"])]
    assert not marked, f"{path.name}: cells {marked} carry # NBVAL_ comments; use the nbval-check-output tag"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_solutions_are_collapsed_code_cells_that_run(path):
    in_markdown = [i for i, cell in enumerate(cells(path))
                   if cell["cell_type"] == "markdown" and "```python" in "".join(cell["source"])]
    assert not in_markdown, f"{path.name}: cells {in_markdown} hold Python in markdown; make it a code cell"
    solutions = [cell for cell in cells(path) if "solution" in tags(cell)]
    assert solutions, f"{path.name}: no code cell tagged solution"
    visible = [i for i, cell in enumerate(cells(path)) if "solution" in tags(cell)
               and (cell["cell_type"] != "code" or not cell["metadata"].get("jupyter", {}).get("source_hidden"))]
    assert not visible, f"{path.name}: solution cells {visible} are not collapsed code cells"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_exercise_has_a_check_after_the_learners_cell(path):
    kinds = [("exercise" if "exercise" in tags(c) else "check" if "check" in tags(c) else None) for c in cells(path)]
    exercises = [i for i, kind in enumerate(kinds) if kind == "exercise"]
    assert exercises, f"{path.name}: no cell tagged exercise"
    for i in exercises:
        following = [kind for kind in kinds[i + 1:] if kind is not None]
        assert following and following[0] == "check", f"{path.name}: exercise cell {i} has no check cell after it"
