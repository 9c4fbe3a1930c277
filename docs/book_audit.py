"""The prose audit: every number a learner reads is one the book printed, or a declared citation.

Usage: ``python docs/book_audit.py [notebook.ipynb ...] [README.md ...]`` prints each problem and exits 1 if
there is any (no arguments: the seven notebooks and both READMEs); ``--stats`` prints the size of each
notebook's prose instead.  ``tests/test_book_numbers.py`` runs the same audit in CI.

**The rule.**  Every number in a notebook's markdown cells must equal, to its printed precision, a number
in that notebook's saved outputs, or be declared in ``docs/book_numbers.toml``.  "To its printed precision":
``25.6`` in the prose matches a printed ``25.58`` (both round to 25.6), ``1571`` matches ``1571.3``, but
``25.6`` does not match ``25.7``.  A percentage also matches its fraction (``96.2 %`` matches a printed
``0.962``).  The sign is ignored (a hyphen before a number is usually a dash or a range).  The saved outputs
are the text a code cell printed: streams, ``text/plain``, ``text/html`` (tables; scripts, styles and
embedded images removed), ``text/markdown`` and ``text/latex``; a figure's title inside a PNG cannot be
read, so print what the prose quotes.  The notebook's own run time (from its cells' execution metadata,
see ``run_seconds``) counts as printed, in seconds, in minutes, and as the minutes and seconds of
"M min S s", so a header can state its own time.

**What is not a number to check** (the only exceptions):

1. code: fenced code blocks and inline code spans (they are call sites and commands, which the code
   cells run), HTML tags, link targets and URLs, arXiv ids (``2206.00364``);
2. digits glued to a letter, digit-like character or underscore: ``x_0``, ``\\beta_1``, ``2D``, ``v2``;
3. a heading's section number (``## 3.2 Title``, ``# 05 · Title``) and a number right after a reference
   word: notebook(s), chapter(s), section(s), §, exercise(s), cell(s), algorithm, figure, table,
   eq./equation, issue (``sections 1.3 and 2``, ``notebooks 05 and 07`` as a whole);
4. a year: a bare four-digit 1900-2099 right after a capitalised word, ``et al.`` or ``&`` (``Ho et al.
   2020``, ``Liu et al. (2022``, ``5 Dec 2026``), and a clock time (``16:00 UTC``, naming a RESULTS section);
5. whole numbers from 0 to 10 (counts, time ends ``t = 0``, small indices), except a percentage
   (``10 %`` is checked).

Numbers inside LaTeX math are checked like any other (``$s = 0.3$`` must be printed or declared); the
subscripts and powers there fall under rules 2 and 5.

**Declaring a citation** (``docs/book_numbers.toml``, one table array per notebook, named by its file
stem; ``[[all]]`` applies to every notebook)::

    [[01_noise_scheduler]]
    number = "1000"
    why = "definition: T, the number of diffusion steps"

    [[05_ode_sampling]]
    number = "25.6"
    source = "benchmarks/RESULTS.md"
    section = "Current numbers"           # optional: only table rows under a heading containing this
    row = "| `flow_cfg.pt` | Euler, 8 |"  # a substring of exactly one table row

A ``why`` entry passes as it is (a definition, a paper's value).  A ``source`` entry is checked: with
``row``, the number must be, to its printed precision, one of that table row's numbers (so a rerun
benchmark that changes the row fails the audit); without ``row``, it must appear in the file.  A
notebook's entry whose number its prose no longer contains is a problem too, so the list cannot go stale.

**README times.**  The README's table ("CPU time ... (default / fast mode)") gives each notebook's
default-mode time first; it must equal the notebook's run time from its saved execution metadata,
rounded to the second, written as ``format_time`` does (``88 s``, ``3 min 15 s``; other spellings of the
same seconds pass).  ``docs/book_times.py`` writes that column.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import re
import sys
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CITATIONS = ROOT / "docs" / "book_numbers.toml"
READMES = (ROOT / "README.md", ROOT / "README.zh-CN.md")

# one number: 60,000 or 25.58 or 1e-4 (digits glued to a word character on either side are not matched)
NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:[eE]([-+]?\d+))?(?!\w)")
LOOSE_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
PERCENT = re.compile(r"\s*(?:\\[,;: ]|~)?\s*(?:\\?%|percent)")  # 10 %, 10%, $10\,\%$
REFERENCE = re.compile(
    r"(?:\bnotebooks?|\bchapters?|\bsections?|§|\bexercises?|\bcells?|\balgorithm|\bfigure|\btable"
    r"|\beq\.|\bequations?|\bissue)\s*\d+(?:\.\d+)*(?:\s*(?:,|and|or|to|–|-)\s*\d+(?:\.\d+)*)*",
    re.IGNORECASE,
)
YEAR = re.compile(r"(?:\b[A-Z][\w-]*|\bal\.?|&)[\s,.(]*((?:19|20)\d\d)(?![\d,.]\d)")
HEADING_NUMBER = re.compile(r"^(#{1,6}\s+)\d+(?:\.\d+)*\.?(?=\s|$)", re.MULTILINE)
CLOCK = re.compile(r"(?<![\d:])\d{1,2}:\d\d(?![\d:])")
ARXIV = re.compile(r"(?<![\d.])\d{4}\.\d{4,5}(?:v\d+)?")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
URL = re.compile(r"\]\([^)]*\)|<https?://[^>]*>|https?://\S+")
TAG = re.compile(r"<!--.*?-->|<[^>]+>", re.DOTALL)
ENTITY = re.compile(r"&#?\w+;")


@dataclass
class ProseNumber:
    text: str  # as written, e.g. "60,000"
    value: float
    tolerance: float  # half a unit of the last printed digit
    percent: bool
    cell: int
    sentence: str


def _blank(pattern: re.Pattern, text: str, group: int = 0) -> str:
    """Replace each match (or one group of it) by spaces, so that positions stay put."""

    def spaces(match: re.Match) -> str:
        start, end = match.span(group)
        whole = match.group(0)
        offset = start - match.start()
        return whole[:offset] + " " * (end - start) + whole[offset + end - start :]

    return pattern.sub(spaces, text)


def checkable_text(markdown: str) -> str:
    """The markdown with everything that rules 1, 3 and 4 exempt blanked out (same length as the input)."""
    text = markdown
    for pattern in (FENCE, CODE_SPAN, URL, TAG, ENTITY, ARXIV, CLOCK, REFERENCE):
        text = _blank(pattern, text)
    text = HEADING_NUMBER.sub(lambda m: m.group(1) + " " * (len(m.group(0)) - len(m.group(1))), text)
    return _blank(YEAR, text, group=1)


def _parse(integer: str, fraction: str | None, exponent: str | None) -> tuple[float, float]:
    """A number's value and half a unit of its last printed digit."""
    value = float(integer.replace(",", "") + (fraction or ""))
    decimals = len(fraction) - 1 if fraction else 0
    scale = 10.0 ** int(exponent) if exponent else 1.0
    return value * scale, 0.5 * 10.0**-decimals * scale


def _sentence(text: str, start: int, end: int) -> str:
    left = max(text.rfind(". ", 0, start), text.rfind("\n", 0, start))
    right_candidates = [i for i in (text.find(". ", end), text.find("\n", end)) if i != -1]
    right = min(right_candidates) if right_candidates else len(text)
    return " ".join(text[left + 1 : right + 1].split())


def prose_numbers(markdown: str, cell: int = 0) -> list[ProseNumber]:
    """The numbers of one markdown cell that the audit checks (the module docstring's rules)."""
    text = checkable_text(markdown)
    found = []
    for match in NUMBER.finditer(text):
        integer, fraction, exponent = match.groups()
        value, tolerance = _parse(integer, fraction, exponent)
        percent = bool(PERCENT.match(text, match.end()))
        if fraction is None and exponent is None and value <= 10 and not percent:
            continue  # rule 5
        found.append(
            ProseNumber(
                match.group(0), value, tolerance, percent, cell, _sentence(markdown, match.start(), match.end())
            )
        )
    return found


def _output_text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return "".join(output.get("text", ""))
    parts = []
    for mime in ("text/plain", "text/html", "text/markdown", "text/latex"):
        value = output.get("data", {}).get(mime)
        if value is None:
            continue
        value = "".join(value) if isinstance(value, list) else str(value)
        if mime == "text/html":
            value = re.sub(r"<(script|style)\b.*?</\1>", " ", value, flags=re.DOTALL | re.IGNORECASE)
            value = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", " ", value)
            value = html.unescape(TAG.sub(" ", value))
        parts.append(value)
    return "\n".join(parts)


def run_seconds(notebook: dict) -> float | None:
    """Seconds from the first code cell's start to the last one's reply, from the execution metadata.

    nbconvert (and JupyterLab with timing recording) stores ``iopub.execute_input`` and
    ``shell.execute_reply`` in each executed code cell's ``metadata.execution``; kernel start is not
    included.  None when no cell carries them.
    """
    starts, ends = [], []
    for cell in notebook["cells"]:
        execution = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in execution and "shell.execute_reply" in execution:
            starts.append(datetime.fromisoformat(execution["iopub.execute_input"].replace("Z", "+00:00")))
            ends.append(datetime.fromisoformat(execution["shell.execute_reply"].replace("Z", "+00:00")))
    if not starts:
        return None
    return (max(ends) - min(starts)).total_seconds()


def format_time(seconds: float) -> str:
    """How the README writes a time: ``48 s`` under a minute, else ``3 min 15 s``."""
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60} s"


def parse_time(text: str) -> int | None:
    """Seconds from ``48 s``, ``3 min 15 s`` or ``6 min``; None for anything else ("under a minute")."""
    match = re.fullmatch(r"\s*(?:(\d+)\s*min)?\s*(?:(\d+)\s*s)?\s*", text)
    if not match or not any(match.groups()):
        return None
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def output_numbers(notebook: dict) -> list[float]:
    """Every number the notebook printed, plus its own run time (module docstring)."""
    values = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            for match in LOOSE_NUMBER.finditer(_output_text(output)):
                values.append(float(match.group(0).replace(",", "")))
    seconds = run_seconds(notebook)
    if seconds is not None:
        values += [seconds, seconds / 60, round(seconds) // 60, round(seconds) % 60]
    return values


def matches(number: ProseNumber | tuple[float, float, bool], candidates: list[float]) -> bool:
    """Whether a number equals one of the candidates to its printed precision (a percentage: or its fraction)."""
    value, tolerance, percent = (
        (number.value, number.tolerance, number.percent) if isinstance(number, ProseNumber) else number
    )
    targets = [(value, tolerance)] + ([(value / 100, tolerance / 100)] if percent else [])
    slack = 1e-9 * max(1.0, value)
    return any(abs(abs(c) - t) <= tol + slack for c in candidates for t, tol in targets)


def load_citations(path: Path = CITATIONS) -> dict[str, list[dict]]:
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _table_rows(text: str, section: str | None) -> list[str]:
    rows, heading = [], ""
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line
        elif line.startswith("|") and (section is None or section in heading):
            rows.append(line)
    return rows


def check_citation(entry: dict, root: Path = ROOT) -> str | None:
    """None if the declared citation holds, else what is wrong with it."""
    if "number" not in entry or not ("why" in entry or "source" in entry):
        return f"citation {entry} needs number and why or source"
    if "source" not in entry:
        return None
    source = root / entry["source"]
    if not source.exists():
        return f"citation of {entry['number']}: no file {entry['source']}"
    match = NUMBER.search(str(entry["number"]))
    if not match:
        return f"citation {entry}: number is not a number"
    value, tolerance = _parse(*match.groups())
    text = source.read_text(encoding="utf-8")
    where = entry["source"]
    if "row" in entry:
        rows = [row for row in _table_rows(text, entry.get("section")) if entry["row"] in row]
        if len(rows) != 1:
            return f"citation of {entry['number']}: {len(rows)} table rows of {where} contain {entry['row']!r}"
        text, where = rows[0], f"{where} row {rows[0]!r}"
    candidates = [float(m.group(0).replace(",", "")) for m in LOOSE_NUMBER.finditer(text)]
    if not matches((value, tolerance, "%" in str(entry["number"])), candidates):
        return f"citation of {entry['number']}: not in {where}"
    return None


def _declared(number: ProseNumber, entries: list[dict]) -> bool:
    for entry in entries:
        match = NUMBER.search(str(entry.get("number", "")))
        if match and math.isclose(_parse(*match.groups())[0], number.value, rel_tol=1e-12, abs_tol=1e-15):
            return True
    return False


def unbacked_numbers(path: Path, citations: dict | None = None) -> list[ProseNumber]:
    """The prose numbers of one notebook that are neither printed in its outputs nor declared."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    citations = load_citations() if citations is None else citations
    entries = citations.get(Path(path).stem, []) + citations.get("all", [])
    printed = output_numbers(notebook)
    return [
        number
        for index, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "markdown"
        for number in prose_numbers("".join(cell["source"]), index)
        if not matches(number, printed) and not _declared(number, entries)
    ]


HEADER_TIME = re.compile(r"\*\*Time:\*\*\s*((?:\d+\s*min\s*)?\d+\s*s)\b")


def header_time_problems(name: str, notebook: dict) -> list[str]:
    """A chapter's stated time (``**Time:** 3 min 24 s``) must be its saved run's own, as a whole: its parts
    being printed somewhere is not enough (a stale "6 min 23 s" passes the number rule if 23 is printed)."""
    seconds = run_seconds(notebook)
    problems = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for match in HEADER_TIME.finditer("".join(cell["source"])):
            if seconds is None or parse_time(match.group(1)) != round(seconds):
                took = "has no execution metadata" if seconds is None else f"took {format_time(seconds)}"
                problems.append(f"{name}, cell {index}: states **Time:** {match.group(1)}, but its saved run {took}")
    return problems


def audit_notebook(path: Path, citations: dict | None = None, root: Path = ROOT) -> list[str]:
    """Every problem of one notebook: unbacked numbers, broken citations, citations its prose no longer uses."""
    citations = load_citations() if citations is None else citations
    name = Path(path).stem
    problems = [
        f"{name}, cell {n.cell}: {n.text}{' %' if n.percent else ''} is neither printed nor declared: {n.sentence}"
        for n in unbacked_numbers(path, citations)
    ]
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    problems += header_time_problems(name, notebook)
    prose = [
        number
        for index, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "markdown"
        for number in prose_numbers("".join(cell["source"]), index)
    ]
    for entry in citations.get(name, []) + citations.get("all", []):
        problem = check_citation(entry, root)
        if problem:
            problems.append(f"{name}: {problem}")
        elif entry in citations.get(name, []) and not any(_declared(number, [entry]) for number in prose):
            problems.append(f"{name}: citation of {entry['number']} is not in the prose any more")
    return problems


def readme_times(readme: Path) -> dict[str, tuple[str, str]]:
    """Notebook stem -> (default-mode time, rest of the cell after " / ") from the README's book table."""
    times = {}
    for line in Path(readme).read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*\[(\w+)\]\(notebooks/\1\.ipynb\)\s*\|.*\|([^|]*)\|\s*$", line)
        if match:
            default, _, fast = match.group(2).strip().partition(" / ")
            times[match.group(1)] = (default, fast)
    return times


def audit_readme(readme: Path, notebooks: Path = NOTEBOOKS) -> list[str]:
    """Problems of a README's default-mode times against the notebooks' execution metadata."""
    problems = []
    times = readme_times(readme)
    for path in sorted(Path(notebooks).glob("[0-9][0-9]_*.ipynb")):
        seconds = run_seconds(json.loads(path.read_text(encoding="utf-8")))
        if path.stem not in times:
            problems.append(f"{Path(readme).name}: no row for {path.stem}")
        elif seconds is None:
            problems.append(f"{Path(readme).name}: {path.stem} has no execution metadata (run it with nbconvert)")
        elif parse_time(times[path.stem][0]) != round(seconds):
            problems.append(
                f"{Path(readme).name}: {path.stem} says {times[path.stem][0]!r}, its run took {format_time(seconds)}"
                " (python docs/book_times.py rewrites it)"
            )
    return problems


def stats(path: Path) -> dict:
    """The size of a notebook's prose: markdown words, the longest markdown cell, cells over 300 words, exercises.

    Words are whitespace-separated tokens of the markdown source (LaTeX included).  Exercises are the
    ``**N.**`` items from a ``## Exercises`` heading to the next level-2 heading.
    """
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    words, exercises, in_exercises = {}, 0, False
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        source = "".join(cell["source"])
        words[index] = len(source.split())
        for line in source.splitlines():
            if re.match(r"##\s", line):
                in_exercises = line[2:].strip().lower().startswith("exercise")
            elif in_exercises and re.match(r"\*\*\d+\.", line):
                exercises += 1
    longest = max(words, key=words.get) if words else None
    return {
        "markdown_words": sum(words.values()),
        "markdown_cells": len(words),
        "longest_cell": longest,
        "longest_words": words.get(longest, 0),
        "cells_over_300": sum(count > 300 for count in words.values()),
        "exercises": exercises,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks and READMEs (default: all)")
    parser.add_argument("--stats", action="store_true", help="print the size of each notebook's prose")
    args = parser.parse_args(argv)
    paths = args.paths or [*sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), *READMES]
    problems = []
    for path in paths:
        if args.stats and path.suffix == ".ipynb":
            print(path.stem, stats(path))
        elif not args.stats:
            problems += audit_notebook(path) if path.suffix == ".ipynb" else audit_readme(path)
    print("\n".join(problems) or ("" if args.stats else "no problems"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
