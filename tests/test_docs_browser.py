"""The documentation site in a real browser: the site is built as `make docs` builds it, served
on localhost, and headless Chromium opens every page: no console error, no failed load, every
<img> decoded (naturalWidth > 0), and nothing fetched from anywhere but the local server (no web
fonts, no CDN), since readers and CI may have no network. A negative control (a page with a
missing image, a console error and a request to another origin) must be flagged, so the check
cannot pass by seeing nothing. Needs Debian's `chromium` (.ci/run installs it where it can);
skipped with the reason otherwise.
"""

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import NEEDS_CHROMIUM, chromium, free_port, new_page, screenshot
from tests.test_docs import build_site

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]

# every <img> of the page, once each has loaded or failed
CHECK_IMAGES = """(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(done => {
    i.addEventListener("load", done); i.addEventListener("error", done); })));
  return {count: imgs.length,
          broken: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)};
})()"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request on the test's stderr
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 for the block; yields the base URL."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[int]:
    """The DevTools port of a headless Chromium."""
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as port:
        yield port


def visit(port: int, url: str, shot: Path | None = None) -> dict:
    """Open `url` in a fresh tab: its images, errors and every URL it requested."""
    page = new_page(port, ("Page", "Runtime", "Log", "Network"))
    page.call("Page.navigate", url=url)
    page.wait_for("Page.loadEventFired")
    images = page.call("Runtime.evaluate", expression=CHECK_IMAGES, awaitPromise=True,
                       returnByValue=True)["result"]["value"]
    if shot is not None:
        screenshot(page, shot)
    page.call("Runtime.evaluate", expression="0")  # drain events logged meanwhile
    requests = [e["params"]["request"]["url"] for e in page.events
                if e.get("method") == "Network.requestWillBeSent"]
    failed = [e["params"].get("errorText", "") for e in page.events
              if e.get("method") == "Network.loadingFailed"]
    page.call("Page.close")
    return {"images": images, "errors": page.errors() + [f"failed load: {f}" for f in failed],
            "requests": requests}


def elsewhere(requests: list[str], origin: str) -> list[str]:
    """Requests to anything but `origin` (inline data and blobs are local)."""
    return [u for u in requests if not u.startswith((origin + "/", "data:", "blob:"))]


def test_the_check_flags_a_broken_page(browser: int, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(
        '<html><body><img src="no-such-figure.png"><link rel="stylesheet" '
        f'href="http://localhost:{free_port()}/font.css">'
        '<script>console.error("deliberate error")</script></body></html>')
    with serve(tmp_path) as origin:
        seen = visit(browser, origin + "/")
    assert seen["images"]["count"] == 1 and len(seen["images"]["broken"]) == 1
    assert any("deliberate error" in e for e in seen["errors"])
    assert any("404" in e for e in seen["errors"])  # the missing image, as the log reports it
    assert len(elsewhere(seen["requests"], origin)) == 1


def test_every_page_opens_with_its_images_and_without_errors(browser: int,
                                                             tmp_path: Path) -> None:
    site = tmp_path / "site"
    built = build_site(site)
    assert built.returncode == 0, built.stderr[-3000:]
    pages = sorted(p.parent.relative_to(site).as_posix() for p in site.rglob("index.html"))
    assert len(pages) >= 18 and "quickstart" in pages and "reference/metrics" in pages
    problems, images = {}, 0
    with serve(site) as origin:
        for page in pages:
            url = f"{origin}/{'' if page == '.' else page + '/'}"
            shot = tmp_path / "quickstart.png" if page == "quickstart" else None
            seen = visit(browser, url, shot)
            images += seen["images"]["count"]
            found = {"errors": seen["errors"], "broken images": seen["images"]["broken"],
                     "requests elsewhere": elsewhere(seen["requests"], origin)}
            if any(found.values()):
                problems[page] = found
    assert problems == {}
    assert images >= 5  # the Quickstart's figures at least
    assert (tmp_path / "quickstart.png").stat().st_size > 10_000  # a rendered page
