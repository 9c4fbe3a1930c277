"""Every number a learner reads is one the book printed or a declared citation (docs/book_audit.py).

The audit on the real notebooks and READMEs: a notebook fails if its prose has a number that none of its
saved outputs prints and docs/book_numbers.toml does not declare, or if a declared RESULTS.md row no longer
holds the number; a README fails if its per-notebook default-mode time differs from the notebook's own run
(``python docs/book_times.py`` rewrites it).
"""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
import book_audit  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_all_seven_notebooks_are_audited():
    assert len(NOTEBOOKS) == 7


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_prose_numbers_are_printed_or_declared(notebook):
    problems = book_audit.audit_notebook(notebook)
    assert not problems, f"{len(problems)} unbacked or stale numbers:\n" + "\n".join(problems)


@pytest.mark.parametrize("readme", book_audit.READMES, ids=lambda path: path.name)
def test_readme_times_are_the_notebooks_own(readme):
    problems = book_audit.audit_readme(readme)
    assert not problems, "\n".join(problems)
