"""The HTML report in a real browser: headless Chromium loads report.html, every image decodes,
nothing is logged as an error, and a screenshot is saved under the test's tmp dir.

The report is built from the committed reduced-scale results (no data, no training). Chromium
is driven over the DevTools protocol (tests/browser.py). A negative control (a page with a
missing image and a console error) must be flagged, so the check cannot pass by seeing nothing.
Needs Debian's `chromium` (.ci/run installs it where it can); skipped with the reason otherwise.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import NEEDS_CHROMIUM, chromium, new_page, screenshot

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]

# Every image the page shows or holds: <img> elements, and the Snakemake report's result
# entries (its figures are data URIs rendered on demand), each decoded by the browser.
CHECK_IMAGES = """(async () => {
  const srcs = [...document.images].map(i => i.src);
  if (typeof results !== "undefined") {
    for (const r of Object.values(results)) {
      if ((r.mime_type || "").startsWith("image/")) srcs.push(r.data_uri);
    }
  }
  const broken = [];
  await Promise.all(srcs.map(src => new Promise(done => {
    const im = new Image();
    im.onload = () => { if (!im.naturalWidth) broken.push(src.slice(0, 100)); done(); };
    im.onerror = () => { broken.push(src.slice(0, 100)); done(); };
    im.src = src;
  })));
  return {count: srcs.length, broken};
})()"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium; yields a function opening a page: (images, errors)."""
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as port:

        def open_page(url: str, shot: Path) -> tuple[dict, list[str]]:
            page = new_page(port)
            page.call("Page.navigate", url=url)
            page.wait_for("Page.loadEventFired")
            images = page.call("Runtime.evaluate", expression=CHECK_IMAGES, awaitPromise=True,
                               returnByValue=True)["result"]["value"]
            screenshot(page, shot)
            page.call("Runtime.evaluate", expression="0")  # drain events logged meanwhile
            return images, page.errors()

        yield open_page


def test_the_check_flags_a_missing_image_and_a_console_error(browser, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<html><body><img src="no-such-figure.png">'
                    '<script>console.error("deliberate error")</script></body></html>')
    images, errors = browser(page.as_uri(), tmp_path / "broken.png")
    assert images["count"] == 1 and len(images["broken"]) == 1
    assert any("deliberate error" in e for e in errors)
    assert any("ERR_FILE_NOT_FOUND" in e for e in errors)


def test_report_loads_every_image_without_console_errors(browser, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    out = subprocess.run([SNAKEMAKE, "--nolock", "--profile", "profiles/figures", "--report",
                          str(report), "reproduce_table", "--configfile", "config/reduced.yaml"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and report.is_file(), out.stderr[-3000:]
    html = report.read_text()
    assert html.index('"Claims"') < html.index('"Tables"') < html.index('"Figures"')
    shot = tmp_path / "report.png"
    images, errors = browser(report.as_uri(), shot)
    assert images["count"] >= 4 and images["broken"] == [], images
    assert errors == []
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
