"""Take the MLflow UI pictures of README.md and docs/tracking.md headless: `make screenshot`.

    docs/screenshot.py TRACKING_URI OUT_DIR [EXPERIMENT]

writes three pictures into OUT_DIR (a path ending in .png, the old form, stands for its folder):

- mlflow-runs.png: the runs table of the preset view (one row per job, the key columns);
- mlflow-charts.png: the same view's charts (speed vs quality, TTFT p95 per job, ...);
- mlflow-trace.png: one request's trace with its assessments (a human's, when there is one).

It presets the experiment's view (`runner.track.views.prepare_experiment`, as `slmbench ui` does),
starts `slmbench ui` on a free 127.0.0.1 port over the store, and drives Debian's Chromium
(installed by the make target) headless over the DevTools protocol on a pipe (no extra package):
it waits for what each picture must show instead of sleeping a fixed time. The fresh browser
profile is given what a person's browser keeps after their first clicks (the Assistant panel
closed, *Model training* chosen in the sidebar), so the pictures show what docs/tracking.md describes."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WIDTH, HEIGHT = 1900, 950
PICTURES = ("mlflow-runs.png", "mlflow-charts.png", "mlflow-trace.png")
MIN_PNG_BYTES = 20_000
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-pipe", f"--window-size={WIDTH},{HEIGHT}"]
# What a person's browser keeps after closing the Assistant once and picking "Model training"
# (MLflow's useLocalStorage keys are `<key>_v<version>`, values JSON).
LOCAL_STORAGE = {"mlflow.assistant.panelOpen_v1": "false",
                 "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
                 "mlflow.workflowType_v1": '"machine_learning"'}


class Browser:
    """Chromium over the DevTools protocol on fds 3 (commands in) and 4 (replies out)."""

    def __init__(self, chromium: str, profile: str):
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def fds() -> None:  # in the child: the pipe ends become fds 3 and 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     preexec_fn=fds, pass_fds=(3, 4, to_chrome_r, from_chrome_w))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.session = None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                  mobile=False)
        self.send("Page.enable")

    def send(self, method: str, timeout: float = 60, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buf:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"chromium did not answer {method}")
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe during {method}")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def js(self, expression: str):
        out = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return (out.get("result") or {}).get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait_for(self, expression: str, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not self.js(f"Boolean({expression})"):
            if time.monotonic() > deadline:
                failed = Path(tempfile.gettempdir()) / "screenshot-failed.png"
                self.shot(failed)
                raise SystemExit(f"the page never showed {what} (what it showed: {failed})")
            time.sleep(0.5)

    def shot(self, out: Path) -> None:
        time.sleep(1.5)  # let the last renders (charts' transitions) settle
        out.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        print(f"screenshot: {out}")

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


# The trace view's "Assess" toggle (its label, then the count of assessments).
ASSESS_BUTTON = "[...document.querySelectorAll('button')].find(b => /^Assess\\b/.test(b.innerText.trim()))"

EXPAND = '[data-component-id="shared.model-trace-explorer.toggle-assessment-expanded"]'  # one per assessment


def _text(*needles: str) -> str:
    return " && ".join(f"document.body.innerText.includes({json.dumps(n)})" for n in needles)


def _trace(client, experiment_id: str):
    """A request trace with assessments: one with a human's, else one with any, else any."""
    traces = client.search_traces(locations=[experiment_id], max_results=200, include_spans=False)
    def rank(t):
        sources = {a.source.source_type for a in t.info.assessments}
        return ("HUMAN" in sources, bool(sources))
    return max(traces, key=rank, default=None)


def main(uri: str, out: Path, experiment: str = "slmbench") -> None:
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    chromium = shutil.which("chromium") or sys.exit("chromium not found: apt-get install chromium")
    from mlflow import MlflowClient

    from runner.track.views import prepare_experiment, view_url

    out = out.parent if out.suffix == ".png" else out
    out.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment) or sys.exit(f"no experiment {experiment!r} in {uri}")
    eid = exp.experiment_id
    if prepare_experiment(client, eid) is None:
        sys.exit(f"could not preset the view of experiment {eid}")
    runs = client.search_runs([eid], "tags.`slmbench.kind` = 'job'", max_results=5)
    names = [r.info.run_name for r in runs][:2]
    trace = _trace(client, eid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/"
    slmbench = str(Path(sys.executable).with_name("slmbench"))
    ui = subprocess.Popen([slmbench, "ui", "--port", str(port), "--uri", uri], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    browser = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}health", timeout=3)
                break
            except OSError:
                if time.monotonic() > deadline or ui.poll() is not None:
                    sys.exit("the MLflow UI did not start")
                time.sleep(1)
        with tempfile.TemporaryDirectory() as profile:
            browser = Browser(chromium, profile)
            browser.goto(f"{base}health")  # the UI's origin without its app (which writes localStorage too)
            browser.wait_for("document.readyState === 'complete'", "the MLflow server's health page")
            browser.js(";".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)})"
                                for k, v in LOCAL_STORAGE.items()))
            browser.goto(base + view_url(eid))
            browser.wait_for(_text("decode_tps.p50", "model.precision", *names), f"the jobs {names}")
            browser.shot(out / "mlflow-runs.png")
            browser.goto(base + view_url(eid, "CHART"))
            plots = "document.querySelectorAll('svg.main-svg').length >= 4"  # plotly draws each chart in svgs
            browser.wait_for(_text("quality.overall", "ttft_s.p95") + " && " + plots, "the preset charts")
            browser.shot(out / "mlflow-charts.png")
            if trace is None:
                sys.exit("no trace in the experiment: mlflow-trace.png cannot be taken")
            tid = trace.info.trace_id
            # the graders' assessments first (the pane lists them first; the scorers' follow, below the fold)
            graded = [a for a in trace.info.assessments if a.source.source_type in ("HUMAN", "LLM_JUDGE")]
            names = sorted({a.name for a in graded or trace.info.assessments})[:3]
            browser.goto(f"{base}#/experiments/{eid}/traces?workflowType=machine_learning&"
                         f"selectedEvaluationId={tid}&traceId={tid}")
            browser.wait_for(_text("Inputs", "Outputs") + " && " + ASSESS_BUTTON, f"trace {tid}")
            if not browser.js(f"document.querySelector({json.dumps(EXPAND)})"):  # the pane starts closed
                browser.js(ASSESS_BUTTON + ".click()")
            expand = f"document.querySelectorAll({json.dumps(EXPAND)})"
            browser.wait_for(f"{expand}.length >= 1 && " + _text(*names), f"the assessments {names} of trace {tid}")
            browser.js(f"{expand}.forEach(b => b.click())")  # each assessment's source and rationale
            rationales = [a.rationale for a in graded if a.rationale]
            browser.wait_for(_text(*names, *rationales[:1]), f"the rationales of trace {tid}'s assessments")
            browser.shot(out / "mlflow-trace.png")
    finally:
        if browser is not None:
            browser.close()
        ui.terminate()
        ui.wait(timeout=30)
    check_pictures(out)


def check_pictures(out: Path) -> None:
    """Each picture is a PNG of a rendered page, not a blank frame (a blank 1900x950 frame is a
    few kB; each page here is over 20 kB). Was tests/test_mlflow_sweep.py's browser check, which
    skipped wherever chromium was missing: it is `make screenshot`'s now."""
    for name in PICTURES:
        png = (out / name).read_bytes() if (out / name).is_file() else b""
        if not png.startswith(b"\x89PNG") or len(png) <= MIN_PNG_BYTES:
            sys.exit(f"{out / name}: not a rendered page ({len(png)} bytes)")
    print(f"{', '.join(PICTURES)} taken into {out}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__.split("\n\n")[1])
    main(sys.argv[1], Path(sys.argv[2]), *[a for a in sys.argv[3:4] if not a.startswith("#")])
