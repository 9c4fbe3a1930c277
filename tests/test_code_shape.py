"""The library keeps its shape as the book grows: short functions, and no module that only re-exports.

Anchors: nanoGPT's longest function is 55 lines, DiT's 35. A function past the limit is split, not excused.
There is no per-file line limit: a concept stays whole in one file (DiT's models.py is 370 lines), and the
split files a 350-line limit caused are what the library redesign (issue 23) folds back together.
The package is flat except for ``course_lib/cli/``, where what no notebook touches (argument parsing, the
commands, the command line's sampler selection) is fenced; its functions are held to the same limit.
"""

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parent.parent / "course_lib"
MAX_FUNCTION_LINES = 60  # from the def line to the end of the body
FILES = sorted(LIBRARY.glob("*.py")) + sorted((LIBRARY / "cli").glob("*.py"))
SUBPACKAGES = {"cli"}  # the only folder allowed inside course_lib/


def file_id(path: Path) -> str:
    return str(path.relative_to(LIBRARY))


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_the_library_is_a_flat_package_of_several_files_and_the_cli_subpackage():
    folders = {p.name for p in LIBRARY.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == SUBPACKAGES, f"course_lib/ holds folders {sorted(folders)}; only {sorted(SUBPACKAGES)} is allowed"
    assert (LIBRARY / "cli" / "__init__.py").is_file()
    assert not [p for p in (LIBRARY / "cli").iterdir() if p.is_dir() and p.name != "__pycache__"]  # one level only
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=[file_id(p) for p in FILES])
def test_no_function_is_longer_than_60_lines(path):
    long = [f"{name} (line {line}): {length} lines" for name, line, length in functions(path)
            if length > MAX_FUNCTION_LINES]
    assert not long, f"{file_id(path)}: split these into named steps: {long}"


def own_statements(path: Path) -> list[str]:
    """What the module's top level holds besides its docstring, imports and ``__all__``: each as ``kind name``.

    A function, a class or a constant is something of its own; so is a statement that runs (``__main__.py``'s
    ``sys.exit(main())``). A re-export shim has none of them: only imports of names that live elsewhere.
    """
    tree = ast.parse(path.read_text(), str(path))
    body = tree.body[1:] if ast.get_docstring(tree) is not None else tree.body
    own = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.append(f"def {node.name}")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if names != ["__all__"]:
                own.append(f"constant {', '.join(names) or ast.unparse(targets[0])}")
        else:
            own.append(f"statement {type(node).__name__} (line {node.lineno})")
    return own


@pytest.mark.parametrize("path", FILES, ids=[file_id(p) for p in FILES])
def test_no_module_only_re_exports(path):
    """Every module holds something of its own, and none imports names only to pass them on (``# noqa: F401``)."""
    assert own_statements(path), f"{file_id(path)} only imports names from elsewhere: fold it into where they live"
    shims = [f"line {number}: {line.strip()}" for number, line in enumerate(path.read_text().splitlines(), 1)
             if "noqa: F401" in line.replace("noqa:F401", "noqa: F401")]
    assert not shims, f"{file_id(path)} re-exports names (import them from where they live instead): {shims}"


def test_the_re_export_check_tells_a_shim_from_a_module(tmp_path):
    shim = tmp_path / "shim.py"
    shim.write_text('"""A shim."""\nfrom .judge import Judge, load_judge  # noqa: F401\n__all__ = ["Judge"]\n')
    assert own_statements(shim) == []
    module = tmp_path / "module.py"
    module.write_text('"""A module."""\nimport math\nLIMIT = 3\n\ndef f():\n    return math.pi\n')
    assert own_statements(module) == ["constant LIMIT", "def f"]
    entry = tmp_path / "__main__.py"
    entry.write_text("import sys\n\nfrom .cli import main\n\nsys.exit(main())\n")
    assert own_statements(entry) == ["statement Expr (line 5)"]


def test_the_counter_counts_from_the_def_line_to_the_end_of_the_body(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("def f():\n" + "    x = 1\n" * 60 + "\n\nclass A:\n    def g(self):\n" + "        x = 1\n" * 59)
    assert {name: length for name, _, length in functions(source)} == {"f": 61, "g": 60}
