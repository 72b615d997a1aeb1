"""The MLflow UI compares the children of a sweep: run a small sweep, serve the store with
``mlflow server`` on 127.0.0.1, and open the compare-runs view in headless Chromium.

The compare view lists metrics in a virtualized grid of fixed height, so a metric far down the
alphabet, such as test_accuracy, is not in the DOM until the grid is scrolled. ``chromium
--dump-dom`` cannot scroll, so the test drives Chromium through the DevTools protocol over a pipe
(``--remote-debugging-pipe``): it waits for the page, scrolls the metrics grid, reads the cells of
test_accuracy and saves a screenshot to test-artifacts/ in the repository.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from biaslab.config import build_config
from biaslab.sweep import run_sweep

CHROMIUM = Path("/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO_ROOT / "test-artifacts" / "mlflow_compare_runs.png"
TINY = dict(preset="quick", epochs=2, landscape=False)
REQUIRED_PARAMS = {"model", "dataset", "bias", "cls", "pct", "seed", "preset"}
REQUIRED_METRICS = {"train_accuracy", "train_accuracy_clean", "test_accuracy", "gen_error", "bias_realized_pct",
                    "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
SERVER_START_SECONDS = 240
PAGE_LOAD_SECONDS = 120

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install chromium)"),
]

# Scrolls the metrics grid of the compare view (its name cells link to metric plots) until the
# row of METRIC is rendered. Returns the text of its value cells, one per run in URL order, and
# leaves the row near the top of the grid for the screenshot. The grid of names and the grid of
# values scroll separately, so the script sets both.
SCROLL_TO_METRIC = """(async () => {
  const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms));
  const grids = Array.from(document.querySelectorAll('.ReactVirtualized__Grid'));
  const index = grids.findIndex(grid => grid.querySelector('a[title="Plot chart"]'));
  if (index < 0 || index + 1 >= grids.length) return {error: 'no metrics grid', grids: grids.length};
  const names = grids[index], values = grids[index + 1];
  names.scrollIntoView({block: 'center'});
  await sleep(200);
  for (let top = 0; top <= names.scrollHeight; top += 150) {
    values.scrollTop = top;
    names.scrollTop = top;
    await sleep(100);
    const label = Array.from(names.querySelectorAll('a')).find(a => a.textContent.trim() === METRIC);
    if (label) {
      const rowTop = label.parentElement.style.top;
      const cells = Array.from(values.querySelectorAll('div')).filter(cell => cell.style.top === rowTop);
      const target = Math.max(0, parseInt(rowTop) - 90);
      values.scrollTop = target;
      await sleep(300);
      names.scrollTop = target;
      await sleep(300);
      return {cells: cells.map(cell => cell.textContent.trim())};
    }
  }
  return {error: 'metric not found', height: names.scrollHeight};
})()"""


class DevToolsPipe:
    """A headless Chromium driven through the DevTools protocol on file descriptors 3 and 4."""

    def __init__(self, profile: Path, log: Path) -> None:
        to_browser_read, to_browser_write = os.pipe()
        from_browser_read, from_browser_write = os.pipe()

        def use_pipe_descriptors() -> None:
            # the protocol expects commands on fd 3 and replies on fd 4 of the browser process
            command_end = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            reply_end = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(command_end, 3)
            os.dup2(reply_end, 4)

        with log.open("wb") as log_file:
            self.process = subprocess.Popen(
                [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1600,1200", "--remote-debugging-pipe", "about:blank"],
                pass_fds=(3, 4), preexec_fn=use_pipe_descriptors, stdout=log_file, stderr=log_file,
            )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self.commands = to_browser_write
        self.replies = from_browser_read
        self.buffer = b""
        self.last_id = 0
        self.session: str | None = None

    def send(self, method: str, params: dict | None = None, timeout: float = 60.0) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params or {}}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline, method)
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method} failed: {reply['error']}")
                return reply["result"]

    def _read_message(self, deadline: float, method: str) -> dict:
        while b"\0" not in self.buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.replies], [], [], max(remaining, 0))
            if not ready:
                raise TimeoutError(f"Chromium sent no reply to {method} in time")
            chunk = os.read(self.replies, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium closed the DevTools pipe during {method}")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def open_page(self, url: str) -> None:
        page = next(target for target in self.send("Target.getTargets")["targetInfos"] if target["type"] == "page")
        self.session = self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str, timeout: float = 60.0):
        """Run a script in the page and return its value, awaiting it when it is a promise."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                           timeout=timeout)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for_text(self, text: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        check = f"!!document.body && document.body.innerText.includes({json.dumps(text)})"
        while time.monotonic() < deadline:
            if self.evaluate(check):
                return True
            time.sleep(0.25)
        return False

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.commands)
        os.close(self.replies)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ui_sweep(tmp_path_factory, plugins):
    folder = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
            patch.delenv(name, raising=False)
        mlflow.set_tracking_uri(uri)
        configs = [build_config(plugins, bias="none", **TINY), build_config(plugins, bias="mislabel", pct=30, **TINY)]
        result = run_sweep(configs, plugins, experiment="ui", progress=False)
        children = [MlflowClient().get_run(run_id) for run_id in result.child_run_ids]
        yield {"folder": folder, "uri": uri, "result": result, "children": children}
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def mlflow_server(ui_sweep):
    folder = ui_sweep["folder"]
    port = free_port()
    log = folder / "mlflow-server.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", ui_sweep["uri"], "--default-artifact-root", str(folder / "artifacts")],
            stdout=log_file, stderr=log_file, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if server.poll() is not None:
                pytest.fail(f"mlflow server exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer on {base} within {SERVER_START_SECONDS} s:\n"
                            f"{log.read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        # the server runs uvicorn workers in its own process group, started above
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_children_log_same_keys(ui_sweep):
    children = ui_sweep["children"]
    param_keys = [set(child.data.params) for child in children]
    metric_keys = [set(child.data.metrics) for child in children]

    assert param_keys[0] == param_keys[1]
    assert metric_keys[0] == metric_keys[1]
    assert REQUIRED_PARAMS <= param_keys[0]
    assert REQUIRED_METRICS <= metric_keys[0]
    for child in children:
        assert {"bias", "cls", "pct"} <= set(child.data.tags)


def test_compare_view_shows_children(ui_sweep, mlflow_server, tmp_path):
    children = ui_sweep["children"]
    runs = json.dumps([child.info.run_id for child in children])
    experiments = json.dumps([ui_sweep["result"].experiment_id])
    url = (f"{mlflow_server}/#/compare-runs?runs={urllib.parse.quote(runs)}"
           f"&experiments={urllib.parse.quote(experiments)}")
    browser = DevToolsPipe(tmp_path / "profile", tmp_path / "chromium.log")
    try:
        browser.open_page(url)
        assert browser.wait_for_text("Run details", PAGE_LOAD_SECONDS), (tmp_path / "chromium.log").read_text()[-2000:]
        text = browser.evaluate("document.body.innerText")
        dom = browser.evaluate("document.documentElement.outerHTML")

        state = browser.evaluate(SCROLL_TO_METRIC.replace("METRIC", json.dumps("test_accuracy")), timeout=180)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.screenshot(SCREENSHOT)
        metric_dom = browser.evaluate("document.documentElement.outerHTML")
    finally:
        browser.close()

    for child in children:
        assert child.info.run_id in dom
        assert child.info.run_name in text
    assert "test_accuracy" in metric_dom
    assert "cells" in state, state
    shown = [float(cell) for cell in state["cells"]]
    stored = [child.data.metrics["test_accuracy"] for child in children]
    # the UI rounds to three decimals
    assert shown == pytest.approx(stored, abs=5e-4)
    assert SCREENSHOT.stat().st_size > 10_000
