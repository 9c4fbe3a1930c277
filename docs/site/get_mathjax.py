"""Put MathJax 3.2.2 (the npm package) into docs/site/_vendor/mathjax/ for the offline website.

Run by ``make mathjax``. Takes the tarball from ``npm pack`` when npm is installed, else straight from
the npm registry; either way its SHA-512 must match the registry's published integrity before
anything is unpacked. Only what a page that typesets TeX as CommonHTML can load is kept: the
``tex-chtml.js`` bundle and the folders it loads on demand (TeX extensions, CHTML fonts, the menu's
accessibility and speech parts).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

PACKAGE = "mathjax@3.2.2"
TARBALL_URL = "https://registry.npmjs.org/mathjax/-/mathjax-3.2.2.tgz"
INTEGRITY = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
KEEP = ["tex-chtml.js", "input/tex", "output/chtml", "a11y", "sre", "ui", "adaptors"]
TARGET = Path(__file__).resolve().parent / "_vendor" / "mathjax"


def fetch(scratch: Path) -> Path:
    npm = shutil.which("npm")
    if npm:
        result = subprocess.run([npm, "pack", PACKAGE, "--silent"], cwd=scratch, capture_output=True, text=True,
                                timeout=300)
        tarballs = sorted(scratch.glob("*.tgz"))
        if result.returncode == 0 and tarballs:
            return tarballs[0]
        print(f"npm pack {PACKAGE} failed ({result.stderr.strip()[-300:]}); trying {TARBALL_URL}", file=sys.stderr)
    tarball = scratch / "mathjax-3.2.2.tgz"
    with urllib.request.urlopen(TARBALL_URL, timeout=120) as answer:
        tarball.write_bytes(answer.read())
    return tarball


def main() -> int:
    if (TARGET / "tex-chtml.js").is_file():
        return 0
    with tempfile.TemporaryDirectory() as name:
        scratch = Path(name)
        tarball = fetch(scratch)
        digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        if digest != INTEGRITY:
            print(f"{tarball.name}: SHA-512 {digest} is not the registry's {INTEGRITY}; nothing installed",
                  file=sys.stderr)
            return 1
        with tarfile.open(tarball) as archive:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse unsafe paths
                archive.extractall(scratch, filter="data")
            else:
                archive.extractall(scratch)
        es5 = scratch / "package" / "es5"
        staged = TARGET.with_name("mathjax.partial")
        shutil.rmtree(staged, ignore_errors=True)
        for part in KEEP:
            source, destination = es5 / part, staged / part
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, destination)
            else:
                shutil.copyfile(source, destination)
        shutil.copyfile(scratch / "package" / "LICENSE", staged / "LICENSE")
        shutil.rmtree(TARGET, ignore_errors=True)
        staged.replace(TARGET)  # whole or not at all: an interrupted copy never looks installed
    print(f"MathJax 3.2.2 installed in {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
