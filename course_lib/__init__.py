"""SimplestDiffusion's library: one module per concept, imported by the notebooks.

Import the modules you need, e.g. ``from course_lib import ddpm, data``; the package itself stays
light so ``python -m course_lib.data`` does not pay for everything else.
"""

__version__ = "0.1.0"
