"""Test configuration: the whole suite, notebooks included, runs in fast mode.

Set before anything imports course_lib and before nbval starts a kernel, which inherits it.
"""

import os

os.environ["COURSE_FAST"] = "1"
