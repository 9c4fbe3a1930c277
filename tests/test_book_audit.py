"""The prose audit itself (docs/book_audit.py, docs/book_times.py), on small notebooks built here.

Each planted drift (a printed number changed, a number in the prose changed, a RESULTS row changed, a README
time changed) must make the audit fail; the untouched versions must pass.
"""

import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
import book_audit  # noqa: E402
import book_times  # noqa: E402

PROSE = "## 2.1 Training\n\nThe loss fell to 0.163 after 1,200 steps, and the judge read 96.2 % of the samples right."
PRINTED = "step 1200: loss 0.16312\nclass accuracy 0.962\n"


def write_notebook(folder: Path, prose: str = PROSE, printed: str = PRINTED, name: str = "01_toy", seconds=75.4):
    notebook = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("train()", outputs=[nbformat.v4.new_output("stream", name="stdout", text=printed)])
    code.metadata["execution"] = {
        "iopub.execute_input": "2026-12-01T10:00:00.000000Z",
        "shell.execute_reply": f"2026-12-01T10:{int(seconds) // 60:02d}:{seconds % 60:09.6f}Z",
    }
    notebook.cells = [nbformat.v4.new_markdown_cell(prose), code]
    path = folder / f"{name}.ipynb"
    nbformat.write(notebook, path)
    return path


def numbers(markdown: str) -> list[str]:
    return [number.text for number in book_audit.prose_numbers(markdown)]


def test_prose_matching_the_outputs_passes(tmp_path):
    assert book_audit.audit_notebook(write_notebook(tmp_path), citations={}) == []


def test_a_changed_printed_number_fails(tmp_path):
    path = write_notebook(tmp_path, printed=PRINTED.replace("0.16312", "0.17012"))
    problems = book_audit.audit_notebook(path, citations={})
    assert len(problems) == 1 and "0.163 " in problems[0] and "cell 0" in problems[0]


def test_a_changed_number_in_the_prose_fails(tmp_path):
    path = write_notebook(tmp_path, prose=PROSE.replace("96.2 %", "97.2 %"))
    problems = book_audit.audit_notebook(path, citations={})
    assert len(problems) == 1 and "97.2 %" in problems[0]


def test_printed_precision():
    printed = [25.58, 1571.3, 0.962]
    assert book_audit.matches(book_audit.prose_numbers("distance 25.6")[0], printed)
    assert not book_audit.matches(book_audit.prose_numbers("distance 25.7")[0], printed)
    assert not book_audit.matches(book_audit.prose_numbers("distance 25.580")[0], [25.5849])
    assert book_audit.matches(book_audit.prose_numbers("it took 1571 s")[0], printed)
    assert book_audit.matches(book_audit.prose_numbers("96.2 % right")[0], printed)
    assert not book_audit.matches(book_audit.prose_numbers("96.2 right")[0], printed)


def test_what_is_not_a_number_to_check():
    assert numbers("# 05 · Sampling\n### 3.2 The paths") == []
    assert numbers("`--epochs 44` and\n```python\nx = 12345\n```\n") == []
    assert numbers("[the paper](https://arxiv.org/abs/2206.00364), arXiv 2209.03003") == []
    assert numbers("$x_{0}$, $\\beta_1$, a 2D toy, v2, 2-D") == []
    assert numbers("notebooks 05 and 07, section 1.3, cells 30 and 33, Algorithm 1, §2") == []
    assert numbers("Ho et al. 2020, Karras et al. (2022, Algorithm 1), on 5 Dec 2026 at 16:00 UTC") == []
    assert numbers("from $t = 1$ to $t = 0$ in 8 steps") == []
    assert numbers("10 % of the time, $30\\,\\%$ of it") == ["10", "30"]
    assert numbers("$s = 0.3$, $N = 1000$, 60,000 images, 2,048 in 1e-4") == ["0.3", "1000", "60,000", "2,048", "1e-4"]
    assert numbers("in 2048 images") == ["2048"]


def test_a_declared_citation_passes_and_an_unused_one_fails(tmp_path):
    path = write_notebook(tmp_path, prose=PROSE + " The schedule ends at $\\beta_T = 0.02$.")
    assert len(book_audit.audit_notebook(path, citations={})) == 1
    declared = {"01_toy": [{"number": "0.02", "why": "paper: Ho et al. 2020, beta_T"}]}
    assert book_audit.audit_notebook(path, citations=declared) == []
    assert book_audit.audit_notebook(path, citations={"all": declared["01_toy"]}) == []
    unused = book_audit.audit_notebook(write_notebook(tmp_path), citations=declared)
    assert len(unused) == 1 and "not in the prose" in unused[0]
    assert book_audit.audit_notebook(path, citations={"01_toy": [{"number": "0.02"}]}) != []


RESULTS = """# Results

## Quality sweep: nfe

| model | sampler | NFE | Fréchet |
|---|---|---|---|
| flow_cfg.pt | euler | 8 | 25.58 |
| flow_cfg.pt | euler | 16 | 24.91 |

## Older sweep

| model | sampler | NFE | Fréchet |
|---|---|---|---|
| flow_cfg.pt | euler | 8 | 31.2 |
"""


@pytest.mark.parametrize("section", [None, "nfe"])
def test_a_results_row_citation_is_read_and_fails_when_the_row_changes(tmp_path, section):
    (tmp_path / "benchmarks").mkdir()
    results = tmp_path / "benchmarks" / "RESULTS.md"
    results.write_text(RESULTS, encoding="utf-8")
    path = write_notebook(tmp_path, prose=PROSE + " At $N = 1000$ Euler 8 scores 25.6.")
    entry = {"number": "25.6", "source": "benchmarks/RESULTS.md", "row": "| euler | 8 | 2"}  # not the 31.2 row
    if section:
        entry = {**entry, "row": "| euler | 8 |", "section": section}
    citations = {"01_toy": [entry], "all": [{"number": "1000", "why": "definition: N"}]}
    assert book_audit.audit_notebook(path, citations=citations, root=tmp_path) == []
    results.write_text(RESULTS.replace("25.58", "27.03"), encoding="utf-8")
    problems = book_audit.audit_notebook(path, citations=citations, root=tmp_path)
    assert problems and "not in benchmarks/RESULTS.md row" in problems[0]


def test_a_results_row_key_must_name_one_row(tmp_path):
    (tmp_path / "RESULTS.md").write_text(RESULTS, encoding="utf-8")
    entry = {"number": "25.6", "source": "RESULTS.md", "row": "| euler | 8 |"}
    assert "2 table rows" in book_audit.check_citation(entry, tmp_path)
    assert "0 table rows" in book_audit.check_citation({**entry, "row": "| heun |"}, tmp_path)
    assert "no file" in book_audit.check_citation({**entry, "source": "MISSING.md"}, tmp_path)


def test_the_run_time_counts_as_printed(tmp_path):
    path = write_notebook(tmp_path, prose=PROSE + " **Time:** 1 min 15 s in default mode (75 s).")
    assert book_audit.audit_notebook(path, citations={}) == []
    path = write_notebook(tmp_path, prose=PROSE + " **Time:** 1 min 37 s in default mode.")
    problems = book_audit.audit_notebook(path, citations={})
    assert len(problems) == 2  # 37 is printed nowhere, and the stated time is not the run's
    assert any("37 is neither printed" in p for p in problems) and any("states **Time:**" in p for p in problems)


def test_a_stale_header_time_fails_even_when_its_parts_are_printed(tmp_path):
    printed = PRINTED + "6 epochs, 23 s per epoch\n"
    path = write_notebook(tmp_path, prose=PROSE + " **Time:** 6 min 23 s for this saved run.", printed=printed)
    assert any("states **Time:** 6 min 23 s" in problem for problem in book_audit.audit_notebook(path, citations={}))
    path = write_notebook(tmp_path, prose=PROSE + " **Time:** 1 min 15 s for this saved run.", printed=printed)
    assert book_audit.audit_notebook(path, citations={}) == []


def readme(tmp_path: Path, cell: str) -> Path:
    path = tmp_path / "README.md"
    path.write_text(
        "# Book\n\n| notebook | what you learn | CPU time (default / fast mode) |\n|---|---|---|\n"
        f"| [01_toy](notebooks/01_toy.ipynb) | things | {cell} |\n\nMore text | with a pipe.\n",
        encoding="utf-8",
    )
    return path


DRIFT = [("1 min 15 s / 9 s", True), ("75 s / 9 s", True), ("1 min 20 s / 9 s", False)]


@pytest.mark.parametrize(("cell", "ok"), DRIFT)
def test_readme_time_drift_fails(tmp_path, cell, ok):
    (tmp_path / "notebooks").mkdir()
    write_notebook(tmp_path / "notebooks")
    problems = book_audit.audit_readme(readme(tmp_path, cell), tmp_path / "notebooks")
    assert (problems == []) == ok, problems


def test_book_times_rewrites_the_table_and_checks_it(tmp_path):
    (tmp_path / "notebooks").mkdir()
    write_notebook(tmp_path / "notebooks", seconds=200.6)
    path = readme(tmp_path, "3 min 19 s / 22 s (one core)")
    junit = tmp_path / "run.xml"
    junit.write_text(
        '<testsuites><testsuite><testcase classname="notebooks.01_toy.ipynb" name="Cell 0" time="7.4"/>'
        '<testcase classname="notebooks.01_toy.ipynb" name="Cell 1" time="5.3"/></testsuite></testsuites>'
    )
    args = ["--readme", str(path), "--notebooks", str(tmp_path / "notebooks")]
    assert book_times.main([*args, "--check"]) == 1
    assert book_times.main(args) == 0
    assert "| 3 min 21 s / 22 s (one core) |" in path.read_text(encoding="utf-8")
    assert book_audit.audit_readme(path, tmp_path / "notebooks") == []
    assert book_times.main([*args, "--check"]) == 0
    assert book_times.main([*args, "--fast-junit", str(junit)]) == 0
    text = path.read_text(encoding="utf-8")
    assert "| 3 min 21 s / 13 s (one core) |" in text and text.endswith("More text | with a pipe.\n")


def test_time_formats():
    formatted = [book_audit.format_time(s) for s in (44.2, 59.6, 88, 420)]
    assert formatted == ["44 s", "1 min 0 s", "1 min 28 s", "7 min 0 s"]
    parsed = [book_audit.parse_time(t) for t in ("44 s", "1 min 28 s", "7 min", "446 s", "under a minute")]
    assert parsed == [44, 88, 420, 446, None]


def test_stats_counts_words_and_exercises(tmp_path):
    prose = "## Exercises\n\n**1.** Do this.\n\n**2. Why?** Do that.\n\n## Next\n\n**3.**"
    path = write_notebook(tmp_path, prose=prose)
    stats = book_audit.stats(path)
    assert stats["exercises"] == 2 and stats["markdown_cells"] == 1 and stats["cells_over_300"] == 0
