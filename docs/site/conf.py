"""Sphinx configuration of the book's website: ``make site`` builds it into ``_build/site/``.

The source directory is the repository root; this folder holds only the configuration. The pages, in
the order of ``_toc.yml``: the README as the landing page, the seven chapters, then an appendix (the
conventions the chapters link to, the benchmarks and their results, the Chinese README). The site
must work with no network at all: the notebooks are rendered from their stored outputs, MathJax is a
local copy (``make mathjax``) and no widget JavaScript is loaded. tests/browser/test_site.py checks it.
"""

from pathlib import Path

from docutils import nodes

HERE = Path(__file__).resolve().parent
MATHJAX = HERE / "_vendor" / "mathjax"  # filled by `make mathjax` (get_mathjax.py), git-ignored

if not (MATHJAX / "tex-chtml.js").is_file():
    raise RuntimeError(f"MathJax is missing in {MATHJAX}: run `make mathjax` (or `make site`, which does it)")

project = "SimplestDiffusion"
author = "SimplestDiffusion contributors"
copyright = "SimplestDiffusion contributors"

extensions = ["myst_nb", "sphinx_external_toc"]
external_toc_path = "docs/site/_toc.yml"  # relative to the source directory, the repository root
external_toc_exclude_missing = True
# only the book's pages are read (the repository root also holds .venv, data, checkpoints...)
# A link from a page to a Markdown file that is not in _toc.yml fails the build (-W): add the file there.
include_patterns = ["README.md", "README.zh-CN.md", "notebooks/*.ipynb", "docs/*.md", "benchmarks/*.md"]
exclude_patterns = ["_build", ".venv", "**/.ipynb_checkpoints"]

# -- the notebooks: stored outputs, never executed
nb_execution_mode = "off"
# ipywidgets would load require.js and the widget manager from CDNs, and a slider cannot move without
# a kernel anyway: no widget JavaScript, and the widget view is never chosen, so each explorer shows
# the PNG of its starting state that the notebook stores beside it
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]

myst_enable_extensions = ["dollarmath", "amsmath"]  # no linkify: it would turn RESULTS.md into a web link
myst_dmath_double_inline = True  # $$...$$ inside a paragraph or list item is display math, as in Jupyter
myst_heading_anchors = 3

# -- MathJax 3.2.2 from npm, copied into _static/mathjax/ (relative mathjax_path: relative to _static)
html_static_path = ["_static", "_vendor"]
mathjax_path = "mathjax/tex-chtml.js"
mathjax3_config = {}

# -- the page
html_theme = "sphinx_book_theme"
html_title = "SimplestDiffusion"
html_theme_options = {
    "use_download_button": False,
    "use_fullscreen_button": False,
    "show_toc_level": 2,
}
html_css_files = ["site.css"]  # _static/site.css: a wider page and room for 120-column code
html_show_sourcelink = False
html_copy_source = False


# -- the explorers' pictures
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def caption_explorers(app, doctree):
    """Caption each widget's stored picture as a still of an explorer; drop widgets that stored no picture.

    An explorer's output holds the widget view and a PNG of its starting state, which names the
    controls' values in a line written under the figure (course_lib.widgets.Explorer.picture); the
    site shows the PNG (nb_mime_priority_overrides) and says here how to move the controls. A widget
    with no picture (a tqdm progress bar) would show only its text fallback, a bar frozen at 0 %.
    """
    bundles = [node for node in doctree.findall(nodes.container) if node.get("nb_element") == "mime_bundle"]
    for bundle in bundles:
        mime_types = [child.get("mime_type", "") for child in bundle.children]
        if WIDGET_VIEW not in mime_types:
            continue
        if any(mime_type.startswith("image/") for mime_type in mime_types):
            caption = nodes.paragraph(
                "", "", nodes.Text("Above: a still of an interactive explorer, in its starting state. Its controls "
                                   "need a running kernel: open the chapter in JupyterLab ("),
                nodes.literal(text="make book"), nodes.Text(") to move them."), classes=["explorer-caption"])
            bundle.parent.insert(bundle.parent.index(bundle) + 1, caption)
        else:
            bundle.parent.remove(bundle)


def setup(app):
    app.connect("doctree-read", caption_explorers)
