"""Drive Debian's headless chromium over the DevTools protocol on a pipe (no extra packages, no network).

``Browser`` starts chromium with ``--remote-debugging-pipe`` (commands on fd 3, replies on fd 4, each message JSON
ending in a NUL byte), opens pages at a given width with JavaScript on or off, measures them, collects console
errors and takes full-page screenshots. Used by tests/test_browser.py and tests/screenshots.py.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--proxy-server=127.0.0.1:9", "--hide-scrollbars", "--mute-audio"]


class BrowserError(RuntimeError):
    """Chromium did not answer, or answered a command with an error."""


class Browser:
    """One headless chromium; use as a context manager. Pages open one at a time."""

    def __init__(self, timeout: float = 60.0):
        if not CHROMIUM:
            raise BrowserError("chromium is not installed (apt-get install -y chromium)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="qreport-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def _fds():  # chromium expects its command pipe on fd 3 and its reply pipe on fd 4
            high = os.dup(to_child_r), os.dup(from_child_w)  # not clobbered if a pipe end is fd 3 or 4
            os.dup2(high[0], 3)  # dup2 makes them inheritable; every other descriptor closes at exec
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_fds, close_fds=False)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.session = None

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop this chromium and remove its profile."""
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- protocol ---------------------------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise BrowserError("chromium closed its DevTools pipe")
                self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        """Send one command and return its result (events that arrive meanwhile are kept in ``events``)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        """Wait for an event (one already received counts)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    # -- pages ------------------------------------------------------------------------------------------------
    def open(self, path_or_url, width: int, height: int = 900, javascript: bool = True) -> None:
        """Open a page in a fresh tab ``width`` CSS pixels wide, with JavaScript on or off, and wait for load."""
        if self.session:
            self.send("Target.closeTarget", {"targetId": self.target}, session=False)
        url = path_or_url if "://" in str(path_or_url) else Path(path_or_url).resolve().as_uri()
        self.target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": self.target, "flatten": True},
                                 session=False)["sessionId"]
        self.events = []
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.width = width
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.send("Emulation.setScriptExecutionDisabled", {"value": not javascript})
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (works with the page's own scripts off)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        """Script exceptions, console.error calls and browser log errors (refused loads, CSP) seen so far."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                out.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(params["entry"].get("text", ""))
        return out

    def overflow(self) -> dict:
        """How wide the document is against the window: the page scrolls sideways when ``scroll > width``."""
        return self.evaluate(
            "({scroll: document.documentElement.scrollWidth, width: window.innerWidth,"
            " wide: Array.from(document.querySelectorAll('body *')).filter(function (e) {"
            "   var r = e.getBoundingClientRect(); return r.right > window.innerWidth + 0.5 && r.width > 0;"
            " }).filter(function (e) { var p = e.parentElement; while (p && p !== document.body) {"
            "   var s = getComputedStyle(p); if (s.overflowX === 'auto' || s.overflowX === 'scroll'"
            "   || s.overflowX === 'hidden') { return false; } p = p.parentElement; } return true; })"
            " .slice(0, 5).map(function (e) { return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')"
            "   + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : ''); })})")

    def screenshot(self, out: Path) -> Path:
        """A PNG of the whole page at the open width."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        height = max(1, min(int(size["height"] + 0.999), 60000))
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                     "clip": {"x": 0, "y": 0, "width": self.width,
                                                              "height": height, "scale": 1}})["data"]
        out = Path(out)
        out.write_bytes(base64.b64decode(data))
        return out
