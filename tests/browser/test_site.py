"""The book as a website (``make site``), checked in a real browser with no network.

The module builds the site from the working tree with the project's Sphinx configuration
(``docs/site/conf.py``, warnings as errors) into a temporary folder, serves it on 127.0.0.1 and
drives Debian's Chromium with Playwright, launched like the slider tests. Every request that is
not for that server is blocked and recorded. On every page (the seven chapters, and the landing
page and appendix the same way): no request left the machine, every formula was typeset by the
bundled MathJax (no raw TeX, no MathJax error), every image loaded and fits the text column, a
chapter shows at least as many images as its notebook stores, each explorer's stored picture is
captioned as its starting state, chapter 02's animation moves, and the previous/next links follow
the book's order. A search for "guidance" finds chapter 03. A viewport screenshot of each page
goes to ``artifacts/site/`` (git-ignored). Without Chromium the browser tests are skipped with
the reason printed (tests/browser/conftest.py); the build and the static check that the HTML
names no external script, style sheet or font run without it.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import threading
import time
import tomllib
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_sliders import CHROMIUM, CHROMIUM_ARGS, why_no_browser  # the slider tests' browser and flags

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "docs" / "site"
MATHJAX = CONF_DIR / "_vendor" / "mathjax" / "tex-chtml.js"
ARTIFACTS = REPO / "artifacts" / "site"
CHAPTERS = [f"notebooks/{path.stem}" for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
# the book's reading order: the previous/next links must walk it
PAGES = ["README", *CHAPTERS, "docs/conventions", "benchmarks/README", "benchmarks/RESULTS", "README.zh-CN"]
IMAGE_MIMES = ("image/png", "image/gif", "image/jpeg", "image/svg+xml")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
BUILD_TIMEOUT_S = 600

browser_only = pytest.mark.skipif(why_no_browser() is not None, reason=why_no_browser() or "")


def stored_images(chapter: str) -> tuple[int, int]:
    """How many outputs of the notebook hold an image (each renders as one <img>), and how many of them
    are an interactive explorer's (a widget view stored with the PNG of its starting state)."""
    notebook = json.loads((REPO / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    bundles = [output.get("data", {}) for cell in notebook["cells"] if cell["cell_type"] == "code"
               for output in cell.get("outputs", [])]
    images = [bundle for bundle in bundles if any(mime in bundle for mime in IMAGE_MIMES)]
    return len(images), sum(WIDGET_VIEW in bundle for bundle in images)


# ---------------------------------------------------------------------------- the build
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Build the site from the working tree, as `make site` does, into a temporary folder."""
    try:
        import myst_nb  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError as error:
        pytest.fail(f"the site tools are missing ({error}): pip install -e '.[dev,site]' (make test does it)")
    if not MATHJAX.is_file():
        pytest.fail(f"MathJax is missing ({MATHJAX}): run `make mathjax` (make test and make site do it)")
    work = tmp_path_factory.mktemp("site")
    out = work / "site"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html", "-c", str(CONF_DIR),
               "-d", str(work / "doctrees"), str(REPO), str(out)]
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        pytest.fail(f"the site build failed (exit {result.returncode}, {seconds:.0f} s):\n"
                    f"{(result.stdout + result.stderr)[-4000:]}")
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    print(f"site built in {seconds:.1f} s: {size / 2**20:.1f} MiB in {out}")
    return out


class _Loads(HTMLParser):
    """Collect what an HTML page makes the browser fetch: scripts, style sheets, icons, fonts, images, frames."""

    def __init__(self):
        super().__init__()
        self.fetched: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed") and attrs.get("src"):
            self.fetched.append(attrs["src"])
        if tag == "link" and attrs.get("href") and set((attrs.get("rel") or "").split()) & {
                "stylesheet", "preload", "prefetch", "icon", "shortcut", "modulepreload", "preconnect", "dns-prefetch"}:
            self.fetched.append(attrs["href"])
        if tag == "object" and attrs.get("data"):
            self.fetched.append(attrs["data"])


EXTERNAL = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])([^'")\s]+)""", re.IGNORECASE)


def test_built_html_references_nothing_outside_the_site(site):
    external = []
    for page in sorted(site.rglob("*.html")):
        parser = _Loads()
        parser.feed(page.read_text(encoding="utf-8"))
        external += [f"{page.relative_to(site)}: {url}" for url in parser.fetched if EXTERNAL.match(url)]
    for sheet in sorted(site.rglob("*.css")):
        external += [f"{sheet.relative_to(site)}: {url}" for url in CSS_URL.findall(sheet.read_text(encoding="utf-8"))
                     if EXTERNAL.match(url)]
    assert not external, "the site loads things from other machines:\n" + "\n".join(external[:20])
    assert len(list(site.rglob("*.html"))) >= len(PAGES)


def test_environment_yml_lists_the_site_extra():
    """The conda environment installs the site tools with the ranges of pyproject's extra `site`."""
    site_extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["site"]
    listed = {line.strip()[2:].replace(" ", "") for line in (REPO / "environment.yml").read_text().splitlines()
              if line.strip().startswith("- ")}
    assert {requirement.replace(" ", "") for requirement in site_extra} <= listed


# ---------------------------------------------------------------------------- serving and the browser
class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def server(site):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    """Chromium with every request for another origin blocked; yields (context, traffic record)."""
    from playwright.sync_api import sync_playwright

    traffic = {"blocked": [], "failed": []}

    def route(request_route):
        url = request_route.request.url
        if url == server or url.startswith(server + "/"):
            request_route.continue_()
        else:
            traffic["blocked"].append(url)
            request_route.abort()

    def response(answer):
        if answer.status >= 400:
            traffic["failed"].append(f"{answer.status} {answer.url}")

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900}, service_workers="block")
        context.route("**/*", route)
        context.on("response", response)
        yield context, traffic
        context.close()


def open_page(browser, url: str):
    context, traffic = browser
    traffic["blocked"].clear()
    traffic["failed"].clear()
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url, wait_until="load", timeout=120_000)
    return page, traffic, errors


# ---------------------------------------------------------------------------- in the page
MATH_STATE = """async () => {
    await MathJax.startup.promise;  // resolves once the first typesetting pass is done
    const formulas = [...document.querySelectorAll('article .math')];  // MyST's \\( \\) and \\[ \\] elements
    const article = document.querySelector('article').cloneNode(true);
    article.querySelectorAll('pre, code, mjx-container, script, style').forEach(node => node.remove());
    const raw = article.textContent.match(
        /\\\\\\(|\\\\\\[|\\$\\$|\\$[^$\\s][^$\\n]*\\$|\\\\(frac|alpha|beta|sigma|epsilon|mathbf|sqrt|bar|hat|cdot|sum|left|mathrm)\\b/g);
    return {
        formulas: formulas.length,
        typeset: document.querySelectorAll('article mjx-container').length,
        untypeset: formulas.filter(node => !node.querySelector('mjx-container'))
            .map(node => node.textContent.slice(0, 80)),
        errors: [...document.querySelectorAll('mjx-merror, [data-mjx-error]')]
            .map(node => node.getAttribute('data-mjx-error') || node.textContent).slice(0, 5),
        raw: (raw || []).slice(0, 5),
    };
}"""

IMAGES = """async () => {
    const images = [...document.querySelectorAll('article img')];
    await Promise.all(images.map(img => img.complete ? null :
        new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); })));
    const column = document.querySelector('article').getBoundingClientRect().width;
    return images.map(img => ({src: img.getAttribute('src'), natural: img.naturalWidth,
                               shown: img.getBoundingClientRect().width, column: column,
                               output: img.closest('.cell_output') !== null}));
}"""

PREV_NEXT = """() => Object.fromEntries(['left-prev', 'right-next'].map(name => {
    const link = document.querySelector(`.prev-next-area a.${name}`);
    return [name, link ? new URL(link.href).pathname : null];
}))"""


@browser_only
@pytest.mark.parametrize("name", PAGES)
def test_page_reads_offline(server, browser, name):
    """Every page of the book; the seven chapters must have formulas and show every image they store."""
    page, traffic, errors = open_page(browser, f"{server}/{name}.html")
    try:
        has_math = page.locator("article .math").count() > 0
        if has_math:
            try:
                page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                       timeout=30_000)
            except Exception:  # noqa: BLE001 - playwright's TimeoutError; say what is known
                pytest.fail(f"{name}: MathJax never started (blocked: {traffic['blocked'][:3]}, "
                            f"failed: {traffic['failed'][:3]})")
        math = page.evaluate(MATH_STATE) if has_math else {"formulas": 0, "typeset": 0, "untypeset": [], "errors": [],
                                                          "raw": []}
        images = page.evaluate(IMAGES)
        links = page.evaluate(PREV_NEXT)
        # each explorer's picture, followed by its caption (docs/site/conf.py: caption_explorers)
        captioned = page.evaluate("() => [...document.querySelectorAll('article p.explorer-caption')]"
                                  ".filter(caption => caption.previousElementSibling?.querySelector('img')"
                                  " || caption.previousElementSibling?.tagName === 'IMG').length")
        if name == "notebooks/02_ddpm_uncond":
            gifs = page.locator("article img[src$='.gif']")
            assert gifs.count() == 1, f"{name}: expected the reverse-process animation, found {gifs.count()} GIFs"
            gifs.first.scroll_into_view_if_needed()
            frames = set()
            for _ in range(4):  # 20 frames of 0.12 s, the last held 1.5 s: four shots 0.7 s apart
                frames.add(gifs.first.screenshot())
                page.wait_for_timeout(700)
            assert len(frames) > 1, f"{name}: the animation does not move (4 screenshots 0.7 s apart are equal)"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{Path(name).name}.png"))
    finally:
        page.close()

    assert not traffic["blocked"], f"{name}: requests left the machine: {traffic['blocked'][:5]}"
    assert not traffic["failed"], f"{name}: local requests failed: {traffic['failed'][:5]}"
    assert not errors, f"{name}: JavaScript errors: {errors[:3]}"

    if name in CHAPTERS:
        assert math["formulas"] > 0, f"{name}: no formula on the page (is dollarmath on?)"
    assert not math["untypeset"], f"{name}: formulas left as raw TeX: {math['untypeset'][:3]}"
    assert not math["errors"], f"{name}: MathJax errors: {math['errors']}"
    assert not math["raw"], f"{name}: raw TeX in the text: {math['raw']}"
    assert math["typeset"] >= math["formulas"]

    broken = [image["src"] for image in images if image["natural"] == 0]
    assert not broken, f"{name}: images that did not load: {broken[:5]}"
    too_wide = [f"{image['src']} ({image['shown']:.0f} px)" for image in images if image["shown"] > image["column"] + 1]
    assert not too_wide, f"{name}: images wider than the text column ({images[0]['column']:.0f} px): {too_wide[:3]}"
    shown = sum(image["output"] for image in images)
    stored, explorers = stored_images(name) if name in CHAPTERS else (0, 0)
    assert shown >= stored, f"{name}: the page shows {shown} output images, the notebook stores {stored}"
    assert captioned == explorers, (f"{name}: {captioned} captioned explorer pictures on the page, "
                                    f"the notebook stores {explorers}")

    index = PAGES.index(name)
    expected = {"left-prev": f"/{PAGES[index - 1]}.html" if index > 0 else None,
                "right-next": f"/{PAGES[index + 1]}.html" if index + 1 < len(PAGES) else None}
    assert links == expected, f"{name}: previous/next links {links}, expected {expected}"
    print(f"{name}: {math['formulas']} formulas typeset, {shown} output images of {stored} stored, "
          f"{len(images)} images in all, {captioned} explorer picture(s) captioned")


@browser_only
def test_landing_page_lists_the_book_in_order(server, browser):
    page, traffic, errors = open_page(browser, f"{server}/index.html")  # redirects to README.html
    try:
        page.wait_for_url(re.compile(r"/README\.html$"), timeout=30_000)
        nav = page.evaluate("() => [...document.querySelectorAll('.bd-sidebar-primary nav a.reference.internal')]"
                            ".map(link => new URL(link.href).pathname)")
    finally:
        page.close()
    assert [path for path in nav if path != "/README.html"] == [f"/{name}.html" for name in PAGES[1:]]
    assert not traffic["blocked"], f"requests left the machine: {traffic['blocked'][:5]}"
    assert not errors, f"JavaScript errors: {errors[:3]}"


@browser_only
def test_search_for_guidance_finds_chapter_03(server, browser):
    page, traffic, errors = open_page(browser, f"{server}/search.html?q=guidance")
    try:
        page.wait_for_function(
            "() => (document.querySelector('.search-summary') || {}).textContent?.includes('Search finished')",
            timeout=60_000)
        found = page.evaluate("() => [...document.querySelectorAll('ul.search li a')]"
                              ".map(link => new URL(link.href).pathname)")
    finally:
        page.close()
    assert "/notebooks/03_cfg_cross_attention.html" in found, f"search for guidance found {found}"
    assert not traffic["blocked"], f"requests left the machine: {traffic['blocked'][:5]}"
    assert not errors, f"JavaScript errors: {errors[:3]}"
