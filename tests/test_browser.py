"""The dashboard in a real browser: Debian's headless Chromium driven by playwright-python.

`bookrec serve` runs in a subprocess on a free port over the planted fixture database. Each page
must load without console errors, the key interactions must work, bad input must give a friendly
message, and every page is saved as a screenshot in artifacts/screenshots/ (gitignored).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from app_fixtures import DEAD_COVER, isbn_of

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PAGES = {  # name: (path, text that proves the page's data arrived)
    "overview": ("/", "Long tail per book"),
    "browse": ("/browse", "books · page 1"),
    "reader": ("/reader?user=1", "Because you rated"),
    "similar": (f"/similar?isbn={isbn_of(2, 3)}", "Readers of this book also read"),
    "metadata": ("/metadata", "co-occurrence"),
    "models": ("/models", "Leaderboard"),
}

if not CHROMIUM.exists():
    pytest.skip(
        "headless Chromium not installed (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright-python is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(app_db) -> Iterator[str]:
    """`bookrec serve` on a free port; yields its base URL."""
    port = _free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server, closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--db", str(app_db), "--port", str(port)]
        + ["--workers", "2"],  # the production server: two processes behind one port
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")

    try:
        # both workers have loaded (a worker still warming up competes with Chromium for the CPU)
        for _ in range(240):
            if output().count("ready in") >= 2 or proc.poll() is not None:
                break
            time.sleep(0.25)
        else:
            pytest.fail(f"the dashboard did not start: {output()[-2000:]}")
        if proc.poll() is not None:
            pytest.fail(f"bookrec serve exited: {output()[-2000:]}")
        urllib.request.urlopen(base + "/_dash-layout", timeout=10).read()
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="bookrec-chromium-")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            args=FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


class Page:
    """A browser tab that records console errors, page errors and dialogs (none are allowed)."""

    def __init__(self, context, base: str):
        self.base = base
        self.tab = context.new_page()
        self.errors: list[str] = []
        self.tab.on("console", self._console)
        self.tab.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.tab.on("dialog", lambda d: (self.errors.append(f"dialog: {d.message}"), d.dismiss()))

    def _console(self, msg) -> None:  # noqa: ANN001 - playwright ConsoleMessage
        if msg.type != "error":
            return
        where = (msg.location or {}).get("url", "")
        # a cover that cannot be fetched (offline, 404) is expected: the placeholder replaces it
        if where.startswith(DEAD_COVER.rsplit("/", 1)[0]):
            return
        self.errors.append(f"console: {msg.text} ({where})")

    def open(self, path: str, expect: str, timeout: float = 20_000) -> None:
        self.tab.goto(self.base + path, wait_until="domcontentloaded")
        try:
            self.wait_text(expect, timeout)
        except sync_api.TimeoutError:
            # keep what the page showed, for the CI log's reader
            SHOTS.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "root"
            self.tab.screenshot(path=str(SHOTS / f"FAILED-{name}.png"), full_page=True)
            raise AssertionError(f"{path}: {expect!r} not shown; console: {self.errors}") from None

    def wait_text(self, text: str, timeout: float = 20_000) -> None:
        self.tab.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout)

    def search(self, dropdown: str, typed: str) -> None:
        """Open a Dash dropdown and type into its search box. Dash 4's dropdown can drop the second
        keystroke while the first search_value round trip is in flight, so pause after the first."""
        self.tab.locator(f"#{dropdown}").click()
        self.tab.locator(".dash-dropdown-search").first.wait_for(state="visible")
        self.tab.keyboard.type(typed[:1])
        self.tab.wait_for_timeout(400)
        self.tab.keyboard.type(typed[1:], delay=30)

    def pick(self, dropdown: str, typed: str, option: str) -> None:
        """Search a Dash dropdown and click the option containing `option`."""
        self.search(dropdown, typed)
        self.tab.locator(".dash-dropdown-option", has_text=option).first.click(timeout=15_000)

    def count_is(self, n: int) -> None:
        """Wait until the browse table says it holds n books."""
        sync_api.expect(self.tab.locator("#browse-count")).to_have_text(
            re.compile(rf"^{n} books? ·"), timeout=20_000
        )

    def close(self) -> None:
        self.tab.close()


@pytest.fixture()
def page(browser, server) -> Iterator[Page]:
    tab = Page(browser, server)
    yield tab
    tab.close()


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_without_console_errors(page, name):
    path, expect = PAGES[name]
    start = time.perf_counter()
    page.open(path, expect)
    page.tab.wait_for_load_state("networkidle")
    elapsed = time.perf_counter() - start
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert page.errors == []
    assert elapsed < 15, f"{name} took {elapsed:.1f} s"
    # every cover is either a real image or the placeholder, never a broken-image icon
    srcs = page.tab.eval_on_selector_all(
        "img.cover-img", "els => els.map(e => e.getAttribute('src'))"
    )
    assert all(s == "/assets/cover-placeholder.svg" or s.startswith("http") for s in srcs)
    assert DEAD_COVER not in srcs or name == "overview", (
        "a dead cover was not replaced by the placeholder"
    )


def test_browse_filter_changes_the_table(page):
    page.open("/browse", "books · page 1")
    page.count_is(36)
    page.pick("browse-genre", "Roma", "Romance")
    page.count_is(12)
    assert "genre=Romance" in page.tab.url
    table = page.tab.locator("#browse-table").inner_text()
    assert "Romance Book 00" in table and "Mystery Book" not in table
    page.tab.locator("#browse-sort-title").click()
    page.wait_text("Title ▲")
    assert "sort=title" in page.tab.url
    # the shared URL restores the same filters
    page.open("/browse?genre=Romance&audience=Adult", "books · page 1")
    page.count_is(6)
    assert page.errors == []


def test_reader_pick_shows_recommendations(page):
    page.open("/reader", "New reader")
    page.pick("reader-id", "12", "12 ·")
    page.wait_text("Because you rated")
    assert "user=12" in page.tab.url
    recs = page.tab.locator("#reader-recs").inner_text()
    assert "Romance Book" in recs
    page.tab.locator("#reader-model").select_option("ncf")
    page.wait_text("current ncf run")
    assert "model=ncf" in page.tab.url and page.errors == []


def test_similar_pick_shows_neighbours(page):
    page.open("/similar", "Search for a book")
    page.pick("similar-book", "science fiction book 03", "Science Fiction Book 03")
    page.wait_text("shares Science Fiction")
    assert f"isbn={isbn_of(2, 3)}" in page.tab.url
    assert "shares Science Fiction" in page.tab.locator("#similar-collab").inner_text()
    assert "Science Fiction Book" in page.tab.locator("#similar-content").inner_text()
    assert page.errors == []


def test_bad_input_gets_a_friendly_message(page):
    sql = "'; DROP TABLE books; --"
    page.open("/reader?user=" + quote(sql), "is not a reader id")
    page.open("/reader?user=987654", "is not in the data")
    page.wait_text("most popular books")
    page.open("/reader", "New reader")
    page.search("reader-id", "<script>alert(1)</script>")
    page.wait_text("reader ids are whole numbers")
    page.open("/similar?isbn=" + quote(sql), "No book with ISBN")
    page.open("/similar", "Search for a book")
    page.search("similar-book", "zz%_qq")
    page.wait_text("No book matches")
    page.open(
        "/browse?q=" + quote("<img src=x onerror=alert(1)>") + "&y0=abc&min=-4&m=nan&page=x",
        "No books match",
    )
    page.open("/browse", "books · page 1")
    box = page.tab.locator("#browse-text")
    box.fill(sql)
    box.press("Enter")
    page.count_is(1)  # the odd fixture title contains exactly that text
    page.open("/models?a=" + quote(sql) + "&run=nope", "Leaderboard")
    page.open("/nowhere", "404")
    assert page.errors == [], page.errors


SURFACE = """() => {
    const g = document.querySelector('#meta-surface .js-plotly-plot');
    return g && g._fullData && g._fullData.length ? g._fullData[0].type : null;
}"""


def test_plotly_bundle_follows_the_page(page):
    """2D pages load plotly.js's cartesian bundle; the metadata page's 3D surface still draws, both
    when opened directly and after a client-side navigation from a 2D page (which reloads it)."""
    page.open("/metadata", "co-occurrence")
    page.tab.wait_for_function(SURFACE, timeout=20_000)
    assert page.tab.evaluate(SURFACE) == "surface"
    fresh = Page(page.tab.context, page.base)
    try:
        fresh.open("/", "Long tail per book")
        fresh.tab.wait_for_function("() => !!window.Plotly", timeout=20_000)
        assert fresh.tab.evaluate("() => !Plotly.PlotSchema.get().traces.surface")  # the 2D bundle
        fresh.tab.get_by_role("link", name="Metadata").click()
        fresh.tab.wait_for_function(SURFACE, timeout=20_000)
        assert fresh.tab.evaluate("() => !!Plotly.PlotSchema.get().traces.surface")
        assert fresh.errors == [] and page.errors == []
    finally:
        fresh.close()
