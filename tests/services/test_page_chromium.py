"""The DockerCoins page in a real headless Chromium, fed by a real Redis (and, for the rng
chart, two real rng processes scraped by a real Prometheus).

Chromium is driven through Debian's chromedriver with plain W3C WebDriver calls over httpx
(a dozen lines, no extra dependency, no browser download).
"""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.support.rng_fleet import NODES, scraped_rngs
from tests.support.servers import (
    LOOPBACK,
    REPO_ROOT,
    RedisServer,
    ServiceProcess,
    free_port,
    wait_for,
)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = REPO_ROOT / "test-artifacts"
RATE_TEXT = re.compile(r"^~(\d+\.\d) hashes/second$")


class Browser:
    """One WebDriver session of headless Chromium."""

    def __init__(self, driver_url: str, profile: Path) -> None:
        self.client = httpx.Client(base_url=driver_url, timeout=60)
        args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            # No outside network: every name but loopback fails to resolve.
            f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {LOOPBACK}",
        ]
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }
        answer = self.client.post("/session", json={"capabilities": {"alwaysMatch": capabilities}})
        answer.raise_for_status()
        self.session = f"/session/{answer.json()['value']['sessionId']}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = self.client.request(method, self.session + path, json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()["value"]

    def open(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def run(self, script: str) -> Any:
        """Run a JavaScript function body in the page and return its result."""
        return self._call("POST", "/execute/sync", {"script": script, "args": []})

    def resize(self, width: int, height: int) -> None:
        self._call("POST", "/window/rect", {"width": width, "height": height})

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))

    def close(self) -> None:
        try:
            self.client.delete(self.session)
        finally:
            self.client.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    assert shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER), (
        "chromium and chromium-driver are not installed (scripts/install.sh installs them)"
    )
    port = free_port()
    log = tmp_path / "chromedriver.log"
    driver = subprocess.Popen(
        [CHROMEDRIVER, f"--port={port}", f"--log-path={log}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    session: Browser | None = None
    try:
        url = f"http://{LOOPBACK}:{port}"
        wait_for(lambda: httpx.get(url + "/status", timeout=1).json()["value"]["ready"])
        session = Browser(url, tmp_path / "chromium-profile")
        yield session
    finally:
        if session is not None:
            session.close()
        driver.terminate()
        try:
            driver.wait(10)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait()


class HashFeeder(threading.Thread):
    """Plays the workers: INCRBY hashes 7 every 0.2 s, for at most 30 s, surviving outages."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.store = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self.done = threading.Event()

    def run(self) -> None:
        for _ in range(150):  # 150 x 0.2 s = 30 s at most
            if self.done.wait(0.2):
                return
            with contextlib.suppress(redis.RedisError):  # Redis stopped on purpose
                self.store.incrby("hashes", 7)

    def stop(self) -> None:
        self.done.set()
        self.join(5)


PAGE_STATE = """
const canvas = document.querySelector('#chart canvas');
let bluePixels = 0;
if (canvas) {
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < pixels.length; i += 4) {
    // the series line and fill are blue (#1d63ed); axes and text are grey
    if (pixels[i + 3] > 0 && pixels[i + 2] > pixels[i] + 60) bluePixels++;
  }
}
const origin = location.origin;
const rng = (window.dockercoins && window.dockercoins.rngRates) || {};
const rngMessage = document.getElementById('rng-message');
return {
  library: typeof uPlot,
  points: window.dockercoins ? window.dockercoins.plot.data[0].length : 0,
  bluePixels: bluePixels,
  rate: document.getElementById('rate').innerText.trim(),
  coins: document.getElementById('coins').innerText.trim(),
  staleVisible: !document.getElementById('stale').hidden,
  staleText: document.getElementById('stale').innerText,
  title: document.querySelector('h1').innerText,
  foreign: performance.getEntriesByType('resource').map(e => e.name)
    .filter(name => !name.startsWith(origin)),
  rngAvailable: rng.available,
  rngMessage: rngMessage.hidden ? '' : rngMessage.innerText.trim(),
  rngChartShown: document.getElementById('rng-chart').offsetParent !== null,
  // the fewest values any line has
  rngPoints: rng.plot && rng.plot.data.length > 1 ? Math.min(...rng.plot.data.slice(1)
    .map(values => values.filter(v => v != null).length)) : 0,
  // the legend's first row is the time axis; one row per line after it
  rngLegend: Array.from(document.querySelectorAll(
    '#rng-chart .u-legend .u-series:not(:first-child) .u-label')).map(e => e.innerText.trim()),
};
"""


def test_page_charts_live_data_and_shows_stale_state(
    browser: Browser, redis_server: RedisServer, tmp_path: Path
) -> None:
    webui = ServiceProcess(
        name="webui",
        env={"REDIS_URL": redis_server.url, "REDIS_TIMEOUT": "0.5"},
        log_path=tmp_path / "webui.log",
    )
    feeder = HashFeeder(redis_server.url)
    try:
        webui.start()
        store = redis.Redis.from_url(redis_server.url)
        for n in range(5):
            store.hset("wallet", f"0{n:063x}", bytes([n]) * 32)
        feeder.start()

        browser.open(webui.url + "/")  # the redirect to /index.html is followed
        state: dict[str, Any] = {}

        def charted() -> bool:
            state.update(browser.run(PAGE_STATE))
            match = RATE_TEXT.match(state["rate"])
            return state["points"] > 1 and match is not None and float(match[1]) > 0

        wait_for(charted, timeout=25, interval=0.5)
        assert state["library"] == "function"
        assert state["title"] == "DockerCoins"
        assert state["bluePixels"] > 0, "the chart drew nothing"
        assert state["coins"] == "5"
        assert state["foreign"] == [], "the page loaded something from outside"
        assert not state["staleVisible"]
        # no PROMETHEUS_URL: the rng chart says so, and the hash-rate chart above works
        wait_for(lambda: browser.run(PAGE_STATE)["rngAvailable"] is False, timeout=10)
        rng = browser.run(PAGE_STATE)
        assert rng["rngMessage"] == "Prometheus not configured (PROMETHEUS_URL is unset)"
        assert not rng["rngChartShown"]
        assert rng["rngLegend"] == []
        # a few more points make a nicer picture for the artifact
        wait_for(lambda: browser.run(PAGE_STATE)["points"] >= 6, timeout=15, interval=0.5)
        browser.screenshot(ARTIFACTS / "webui.png")

        redis_server.stop()
        wait_for(lambda: browser.run(PAGE_STATE)["staleVisible"], timeout=15, interval=0.5)
        stale = browser.run(PAGE_STATE)
        assert "Stale" in stale["staleText"]
        browser.screenshot(ARTIFACTS / "webui-stale.png")

        redis_server.start()
        wait_for(lambda: not browser.run(PAGE_STATE)["staleVisible"], timeout=15, interval=0.5)
        assert "Traceback" not in webui.logs()
    finally:
        feeder.stop()
        webui.stop()


def test_page_charts_rng_answers_per_instance_from_prometheus(
    browser: Browser, redis_server: RedisServer, tmp_path: Path
) -> None:
    webui = ServiceProcess(
        name="webui", env={"REDIS_URL": redis_server.url}, log_path=tmp_path / "webui.log"
    )
    feeder = HashFeeder(redis_server.url)
    with scraped_rngs(tmp_path) as fleet:
        webui.env["PROMETHEUS_URL"] = fleet.prometheus.url
        try:
            webui.start()
            feeder.start()
            browser.resize(1280, 1250)  # both charts in the screenshot
            browser.open(webui.url + "/")
            state: dict[str, Any] = {}

            def both_lines_drawn() -> bool:
                state.update(browser.run(PAGE_STATE))
                rng = {name: value for name, value in state.items() if name.startswith("rng")}
                assert sorted(state["rngLegend"]) == sorted(NODES), rng  # named on timeout
                return bool(state["rngPoints"] >= 5)  # a few points make a picture

            wait_for(both_lines_drawn, timeout=45, interval=0.5)
            assert state["rngAvailable"] is True
            assert state["rngChartShown"]
            assert state["rngMessage"] == ""
            assert state["points"] > 1, "the hash-rate chart stopped"
            assert state["foreign"] == [], "the page loaded something from outside"
            browser.screenshot(ARTIFACTS / "webui-rng-rates.png")
            assert "Traceback" not in webui.logs()
        finally:
            feeder.stop()
            webui.stop()
