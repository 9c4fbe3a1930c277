"""Write the README's per-notebook times from the runs themselves.

Default mode: each notebook's time is its own run, read from the execution metadata that ``jupyter nbconvert
--execute`` saves in every code cell (first cell's start to last cell's reply, kernel start not included;
``book_audit.run_seconds``).  Rerun a notebook, commit it, run this script, and the README says what it took.

Fast mode: a notebook's time under the test suite, summed over its cells from a JUnit XML report of a
pytest run (nbval makes one test per code cell; pytest's time of a test includes its set-up, so the first
cell carries the kernel start)::

    pytest notebooks --junitxml=/tmp/notebooks.xml
    python docs/book_times.py --fast-junit /tmp/notebooks.xml

Without ``--fast-junit`` the fast-mode times are left as they are (a committed notebook keeps no record of
its fast run).  The script rewrites the last column of the book table ("default", or "default / fast") in README.md and
README.zh-CN.md in place, keeping anything after the fast time (such as "(one core)").  ``--check`` writes
nothing and exits 1 if a README disagrees; ``tests/test_book_numbers.py`` checks the default times the same
way (``book_audit.audit_readme``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import book_audit  # noqa: E402  (docs/ is not a package; this script runs by path)

ROW = re.compile(r"^(\|\s*\[(\w+)\]\(notebooks/\2\.ipynb\)\s*\|.*\|)([^|]*)(\|\s*)$")
FAST_TIME = re.compile(r"^\s*(?:\d+\s*min(?:\s*\d+\s*s)?|\d+\s*s|under a minute|不到一分钟)")


def default_times(notebooks: Path = book_audit.NOTEBOOKS) -> dict[str, str]:
    """Notebook stem -> its default-mode time as the README writes it, from the saved execution metadata."""
    times = {}
    for path in sorted(Path(notebooks).glob("[0-9][0-9]_*.ipynb")):
        seconds = book_audit.run_seconds(json.loads(path.read_text(encoding="utf-8")))
        if seconds is not None:
            times[path.stem] = book_audit.format_time(seconds)
    return times


def fast_times(junit: Path) -> dict[str, str]:
    """Notebook stem -> its time under pytest, summed over its cells' tests in a JUnit XML report."""
    seconds = defaultdict(float)
    for case in ElementTree.parse(junit).iter("testcase"):
        match = re.search(r"(\d\d_\w+?)\.ipynb", case.get("classname", "") + " " + case.get("file", ""))
        if match:
            seconds[match.group(1)] += float(case.get("time", 0))
    return {stem: book_audit.format_time(total) for stem, total in seconds.items()}


def rewrite(text: str, default: dict[str, str], fast: dict[str, str]) -> str:
    """The README text with the book table's time cells set to the given times (others left as they are)."""
    lines = []
    for line in text.split("\n"):
        match = ROW.match(line)
        if match and (match.group(2) in default or match.group(2) in fast):
            old_default, _, old_fast = match.group(3).strip().partition(" / ")
            new_default = default.get(match.group(2), old_default)
            new_fast = old_fast
            if match.group(2) in fast:
                rest = FAST_TIME.sub("", old_fast, count=1) if FAST_TIME.match(old_fast) else ""
                new_fast = fast[match.group(2)] + rest
            times = f"{new_default} / {new_fast}" if new_fast else new_default  # a table of one time per chapter
            line = f"{match.group(1)} {times} {match.group(4)}".rstrip()
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast-junit", type=Path, help="JUnit XML of a pytest run of the notebooks (fast mode)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a README disagrees")
    parser.add_argument("--readme", type=Path, nargs="*", default=list(book_audit.READMES))
    parser.add_argument("--notebooks", type=Path, default=book_audit.NOTEBOOKS)
    args = parser.parse_args(argv)
    default = default_times(args.notebooks)
    fast = fast_times(args.fast_junit) if args.fast_junit else {}
    stale = []
    for readme in args.readme:
        if not readme.exists():
            continue
        text = readme.read_text(encoding="utf-8")
        new = rewrite(text, default, fast)
        if new != text:
            stale.append(readme)
            if not args.check:
                readme.write_text(new, encoding="utf-8")
        print(f"{readme.name}: {'up to date' if new == text else 'stale' if args.check else 'rewritten'}")
    for stem, time in default.items():
        print(f"  {stem}: {time}" + (f" / {fast[stem]}" if stem in fast else ""))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
