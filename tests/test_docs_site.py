"""The documentation site: it builds strictly and offline, and works in a real browser.

- The build: ``sphinx-build -W --keep-going -n`` (warnings are errors, every
  cross-reference must resolve; numpydoc validates every public docstring).
- Links: every internal link and anchor on every page points at something that exists.
- The browser: the built site, served on 127.0.0.1, opened in headless Chromium
  (Debian's ``chromium``, driven by Playwright through ``executable_path``; no browser is
  downloaded). Every page loads with no console error and no request leaving 127.0.0.1,
  images and math render, search finds ``log_softmax``, API anchors resolve. Full-page
  screenshots at 1280 and 390 px go to ``<build>/screenshots`` for people to look at.

The site is built once per run, into a temporary folder, or into ``SD_DOCS_HTML`` where
that is set (CI: ``docs/_build/html``, so the site and its screenshots stay there as
artifacts); a folder that already holds a built site is used as it is. Without the
``docs`` extra or without Chromium these tests skip, unless ``SD_REQUIRE_DOCS_BROWSER=1``
(CI), where a missing piece fails.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("SD_REQUIRE_DOCS_BROWSER") == "1"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-pings",
]
# the pages a reader opens from the navigation bar (and every page is loaded below)
PAGES = [
    "index",
    "getting-started",
    "coming-from",
    "functions-and-layers",
    "numerics",
    "backends",
    "beyond-one-machine",
    "performance",
    "writing-a-backend",
    "conformance",
    "api",
    "cli",
    "changelog",
]


def _need(condition: bool, why: str) -> None:
    if not condition:
        if REQUIRED:
            pytest.fail(f"SD_REQUIRE_DOCS_BROWSER=1 but {why}")
        pytest.skip(why)


def sphinx_build(outdir: Path) -> subprocess.CompletedProcess[str]:
    """The strict, offline build CI runs (``-W --keep-going -n``)."""
    return subprocess.run(
        [
            *(sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html"),
            *("-d", str(outdir.parent / "doctrees"), str(ROOT / "docs"), str(outdir)),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    given = os.environ.get("SD_DOCS_HTML")
    if given and (Path(given) / "index.html").is_file():
        return Path(given).resolve()
    for module in ("sphinx", "pydata_sphinx_theme", "numpydoc", "myst_parser", "sphinxarg"):
        _need(
            importlib.util.find_spec(module) is not None,
            f"{module} is not installed (pip install -e '.[docs]')",
        )
    out = Path(given).resolve() if given else tmp_path_factory.mktemp("docs") / "html"
    proc = sphinx_build(out)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
    return out


def test_the_site_builds_strictly_with_every_page(site: Path):
    for page in PAGES:
        assert (site / f"{page}.html").is_file(), page
    # MathJax and its fonts are served by the site itself
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert list((site / "_static" / "mathjax").rglob("*.woff"))
    # the performance figure is drawn from the committed bench file at build time
    assert (site / "_images" / "numpy.png").read_bytes()[:4] == b"\x89PNG"


def _html_pages(site: Path) -> list[Path]:
    return sorted(p for p in site.glob("*.html"))


def test_every_internal_link_and_anchor_resolves(site: Path):
    bs4 = pytest.importorskip("bs4")
    ids: dict[str, set[str]] = {}
    soups = {}
    for page in _html_pages(site):
        soup = bs4.BeautifulSoup(page.read_text(), "html.parser")
        soups[page.name] = soup
        ids[page.name] = {tag["id"] for tag in soup.find_all(id=True)}
    broken = []
    checked = 0
    for name, soup in soups.items():
        for a in soup.find_all("a", href=True):
            href = a["href"]
            if urlparse(href).scheme or href.startswith(("mailto:", "//")):
                continue
            target, fragment = urldefrag(urljoin(name, href))
            target = target or name
            if not (site / target).exists():
                broken.append(f"{name}: {href} (no {target})")
            elif fragment and target.endswith(".html") and fragment not in ids.get(target, ()):
                broken.append(f"{name}: {href} (no #{fragment} in {target})")
            checked += 1
    assert checked > 500
    assert not broken, "\n".join(broken[:40])


def _chromium() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    _need(False, "Debian's chromium is not installed (apt-get install chromium)")
    raise AssertionError  # unreachable


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser(served: str) -> Iterator[object]:
    _need(importlib.util.find_spec("playwright") is not None, "playwright is not installed")
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


class _Watch:
    """What one page did: console errors, uncaught exceptions, requests elsewhere."""

    def __init__(self, page: object, base: str) -> None:
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.failed: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("request", self._request)
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))
        page.on("response", self._response)
        self.base = base

    def _response(self, response: object) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.url}: HTTP {response.status}")

    def _request(self, request: object) -> None:
        url = request.url
        if not url.startswith((self.base, "data:", "blob:", "about:")):
            self.foreign.append(url)


def test_every_page_loads_cleanly_and_is_photographed(browser, served: str, site: Path):
    shots = site.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    pages = [p.name for p in _html_pages(site)]
    problems = []
    for width, height in ((1280, 900), (390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        for name in pages:
            page = context.new_page()
            watch = _Watch(page, served)
            page.goto(served + name, wait_until="networkidle")
            broken_images = page.evaluate(
                "Array.from(document.images)"
                ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
            )
            for kind, found in (
                ("console error", watch.errors),
                ("request leaving 127.0.0.1", watch.foreign),
                ("failed request", watch.failed),
                ("image not loaded", broken_images),
            ):
                problems += [f"{name} at {width}px: {kind}: {item}" for item in found]
            if name.removesuffix(".html") in PAGES:
                page.screenshot(path=str(shots / f"{name[:-5]}-{width}.png"), full_page=True)
            page.close()
        context.close()
    assert not problems, "\n".join(problems[:40])
    assert len(list(shots.glob("*-1280.png"))) == len(PAGES)
    assert len(list(shots.glob("*-390.png"))) == len(PAGES)


def test_math_is_rendered_by_the_site_s_own_mathjax(browser, served: str):
    page = browser.new_page()
    watch = _Watch(page, served)
    page.goto(served + "numerics.html", wait_until="networkidle")
    page.wait_for_selector("mjx-container", timeout=20_000)
    assert page.locator("mjx-container").count() >= 5
    assert not watch.foreign and not watch.errors
    page.close()


def test_search_finds_log_softmax(browser, served: str):
    page = browser.new_page()
    page.goto(served + "search.html?q=log_softmax", wait_until="networkidle")
    results = page.locator("#search-results ul.search li")
    results.first.wait_for(timeout=20_000)
    texts = results.all_inner_texts()
    assert any("log_softmax" in t for t in texts), texts[:5]
    assert any(
        "api" in a
        for a in page.locator("#search-results a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))"
        )
    )
    page.close()


def test_api_anchors_resolve_in_the_browser(browser, served: str):
    page = browser.new_page()
    for anchor in (
        "softmax_dispatch.softmax",
        "softmax_dispatch.log_softmax_backward",
        "softmax_dispatch.SoftmaxCrossEntropy",
        "softmax_dispatch.Backend",
        "softmax_dispatch.BackendUnavailable",
        "softmax_dispatch_numpy._kernels.cross_entropy",
    ):
        page.goto(f"{served}api.html#{anchor}", wait_until="networkidle")
        target = page.locator(f"[id='{anchor}']")
        assert target.count() == 1, anchor
        assert target.is_visible(), anchor
        top = target.evaluate("e => e.getBoundingClientRect().top")
        assert 0 <= top < page.viewport_size["height"], (anchor, top)
    page.close()
