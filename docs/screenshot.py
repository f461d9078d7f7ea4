"""Take the README's MLflow UI screenshot headless: `make screenshot`.

Starts `slmbench ui` on a free 127.0.0.1 port over the given store, waits until it answers,
and has Debian's Chromium (installed by the make target) render the experiment page."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1500,950", "--virtual-time-budget=20000"]


def main(uri: str, out: Path, page: str = "#/experiments/1") -> None:
    chromium = shutil.which("chromium") or sys.exit("chromium not found: apt-get install chromium")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    slmbench = str(Path(sys.executable).with_name("slmbench"))
    ui = subprocess.Popen([slmbench, "ui", "--port", str(port), "--uri", uri], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3)
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("the MLflow UI did not start")
                time.sleep(1)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
                            f"http://127.0.0.1:{port}/{page}"], check=True, capture_output=True, timeout=120)
        print(f"screenshot: {out}")
    finally:
        ui.terminate()
        ui.wait(timeout=30)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:])
