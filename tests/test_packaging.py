"""environment.yml and pyproject.toml must name the same dependencies with the same ranges."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONDA_TO_PIP = {"pytorch": "torch"}


def _split(requirement: str) -> tuple[str, str]:
    match = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement)
    return match.group(1).lower(), match.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])

    conda = {}
    in_dependencies = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_dependencies = True
            continue
        item = re.match(r"^  - (?!pip:)([^#]+)$", line)
        if in_dependencies and item:
            name, spec = _split(item.group(1))
            conda[CONDA_TO_PIP.get(name, name)] = spec
    conda.pop("python"), conda.pop("pip")
    assert conda == wanted
    assert "-e .[dev]" in (ROOT / "environment.yml").read_text()


def test_channels_are_conda_forge_only():
    text = (ROOT / "environment.yml").read_text()
    channels = re.search(r"channels:\n((?:  - .*\n)+)", text).group(1).split()
    assert [c for c in channels if c != "-"] == ["conda-forge"]
