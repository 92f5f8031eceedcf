"""The HTML report in a real browser: headless Chromium loads report.html, every image decodes,
nothing is logged as an error, and a screenshot is saved under the test's tmp dir.

The report is built from the committed reduced-scale results (no data, no training). Chromium
is driven over the DevTools protocol with a minimal WebSocket client (standard library only).
A negative control (a page with a missing image and a console error) must be flagged, so the
check cannot pass by seeing nothing. Needs Debian's `chromium` (.ci/run installs it where it
can); skipped with the reason otherwise.
"""

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CHROMIUM = shutil.which("chromium")

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                 "(apt-get install chromium; .ci/run does it as root)")]

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


class DevTools:
    """One page of a headless Chromium, over a WebSocket (RFC 6455, client side, text frames)."""

    def __init__(self, ws_url: str, timeout: float = 60):
        host, port, path = re.match(r"ws://([^:/]+):(\d+)(/.*)", ws_url).groups()
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket"
                           f"\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.next_id, self.events = 0, []

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            data += chunk
        return data

    def _recv(self) -> dict:
        message = b""
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv_exact(8))[0]
            message += self._recv_exact(n)
            if b0 & 0x80:  # FIN
                return json.loads(message)

    def _send(self, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x81])  # FIN, text
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}).encode())
        while True:
            msg = self._recv()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            if time.monotonic() > end:
                raise TimeoutError(event)
            self.events.append(self._recv())

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads the page reported."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                  for a in p["args"]))
            elif e.get("method") == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append("exception: " + d.get("exception", {}).get("description", d["text"]))
            elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append("log: " + p["entry"]["text"])
        return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium with remote debugging; yields a function opening a page."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with socket.socket() as free:  # a free port for the DevTools endpoint
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    log = open(profile / "chromium.log", "w")  # a file, not a pipe: a full pipe would block it
    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                             f"--remote-debugging-port={port}", "--remote-allow-origins=*",
                             f"--user-data-dir={profile}", "--window-size=1400,1000",
                             "about:blank"], stdout=log, stderr=log)
    try:
        end = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > end:
                    pytest.fail("chromium did not start its DevTools endpoint: "
                                + (profile / "chromium.log").read_text()[-2000:])
                time.sleep(0.2)

        def open_page(url: str, screenshot: Path) -> tuple[dict, list[str]]:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank",
                                         method="PUT")
            target = json.loads(urllib.request.urlopen(req, timeout=30).read())
            page = DevTools(target["webSocketDebuggerUrl"])
            for domain in ("Page", "Runtime", "Log"):
                page.call(f"{domain}.enable")
            page.call("Page.navigate", url=url)
            page.wait_for("Page.loadEventFired")
            images = page.call("Runtime.evaluate", expression=CHECK_IMAGES, awaitPromise=True,
                               returnByValue=True)["result"]["value"]
            shot = page.call("Page.captureScreenshot", format="png")
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            page.call("Runtime.evaluate", expression="0")  # drain events logged meanwhile
            return images, page.errors()

        yield open_page
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


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
