"""Copy one figure per chapter out of the committed notebooks into docs/gallery/ for the README.

The pictures are the notebooks' own default-mode outputs, not redrawn: rerun a notebook, then this
script, and the README shows what the book now draws.  Usage: ``python docs/make_gallery.py``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "docs" / "gallery"

# notebook -> ids of the code cells whose first PNG output goes into the gallery
FIGURES = {
    "01_noise_scheduler": ["40794e9f"],  # the forward process on real digits
    "02_ddpm_uncond": ["c9127deb"],  # the shipped unconditional DDPM alone and autoguided, same noise
    "03_cfg_cross_attention": ["0d57b3d3", "5360150a"],  # digits x guidance; cross-attention maps
    "04_flow_training": ["409e40d5"],  # a digit along the straight path
    "05_ode_sampling": ["436878ae"],  # Euler and Heun at growing step counts
    "06_sde_sampling": ["a2de9a4e"],  # variety from one noise as the SDE noise level grows
    "07_reflow_few_steps": ["c51367fe"],  # base and reflow at 1, 2 and 4 Euler steps from the same noise
}


def first_png(notebook: Path, cell_id: str) -> bytes:
    cells = {cell.get("id"): cell for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]}
    if cell_id not in cells:
        raise SystemExit(f"{notebook.name}: no cell with id {cell_id} (edit FIGURES in {Path(__file__).name})")
    for output in cells[cell_id].get("outputs", []):
        if "image/png" in output.get("data", {}):
            return base64.b64decode(output["data"]["image/png"])
    raise SystemExit(f"{notebook.name}: cell {cell_id} has no PNG output; run the notebook in default mode first")


def main() -> None:
    GALLERY.mkdir(parents=True, exist_ok=True)
    for name, cell_ids in FIGURES.items():
        for index, cell_id in enumerate(cell_ids):
            target = GALLERY / f"{name}{'' if index == 0 else f'_{index + 1}'}.png"
            target.write_bytes(first_png(ROOT / "notebooks" / f"{name}.ipynb", cell_id))
            print(f"{target.relative_to(ROOT)}  ({target.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
