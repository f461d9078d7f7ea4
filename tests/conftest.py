"""Shared fixtures. Tests drive the real Foundry Local runtime on the real model
pack (built by `make test` before pytest; rebuilt here if missing), and the CLI in
subprocesses exactly as a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripted_server
SLMBENCH = str(Path(sys.executable).with_name("slmbench"))
SMALL = "smollm2-135m-int8"  # the smallest model that reads well


# `make test`'s first pass runs two pytest-xdist workers on two cores. A worker's NumPy (the notes
# scorer's embedding model) would start a BLAS thread per core, and two workers' threads then spin
# against each other: measured on one test's run, 23.7 s of CPU with a thread per core and 18.6 s
# with one. One BLAS thread per worker (and per process it starts) uses the two cores without that.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

# The modules that take longest go first (pass 1 hands a worker a whole module at a time): the
# workers then finish together instead of one running a long module alone at the end. Ordered by
# their summed test time in a profile of pass 1 (most first, seconds of wall time on two cores).
LONGEST_FIRST = ["test_models_cli", "test_tracking", "test_launchers", "test_benchmarks", "test_run",
                 "test_quality_decision", "test_judges", "test_compare", "test_secrets", "test_backend_registry",
                 "test_mlflow_sweep", "test_verdict", "test_meaning", "test_fidelity", "test_qualify"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__ if item.module else "", len(rank)))


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600,
            input: str | None = None, tracked: bool = False) -> subprocess.CompletedProcess:
    """`slmbench ARGS` as a user types it. A `run` logs to MLflow only when the test reads MLflow
    (tracked=True) or sets tracking.* itself: importing MLflow and logging a job cost 3.6 s of CPU
    per run (a one-round smoke run on the pack model: 8.9 s tracked, 5.3 s untracked)."""
    if args and args[0] == "run" and not tracked and not any(a.startswith("tracking.") for a in args):
        args = (*args, "tracking.enabled=false")
    return subprocess.run([SLMBENCH, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd or ROOT, input=input)


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory) -> str:
    """Every CLI run logs to MLflow (tracking is on by default): into a throwaway store,
    not the repository's outputs/."""
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{db}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


@pytest.fixture(scope="session")
def pack_home() -> Path:
    """The shared cache holding the built pack (SLMBENCH_HOME or the default)."""
    from runner.config import paths
    from runner.models import pack

    pack.build_pack(log=lambda s: None)  # no-op when `make pack` already ran
    return paths.home()


@pytest.fixture
def unqualified_home(tmp_path: Path, pack_home: Path) -> Path:
    """An empty SLMBENCH_HOME that reuses the verified source weights (no download) and the
    scorers' verified embedding model, with no grader qualified yet: for tests of qualifying."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "weights").symlink_to(pack_home / "weights")
    (home / "scorers").symlink_to(pack_home / "scorers")
    return home


@pytest.fixture
def fresh_home(unqualified_home: Path, pack_home: Path) -> Path:
    """An empty SLMBENCH_HOME for models and runs, sharing the default cache's qualifications: a
    job's graders are qualified once per cache, keyed by their code and the calibration set's
    digest (judges/qualify.py), so a job here reads the figures a job elsewhere measured, as a
    user's second run does (measuring them again costs ~15 s of CPU)."""
    (pack_home / "qualification").mkdir(exist_ok=True)
    (unqualified_home / "qualification").symlink_to(pack_home / "qualification")
    return unqualified_home


def home_with_scorers(home: Path) -> Path:
    """An SLMBENCH_HOME of its own that shares the default cache's verified scorer models."""
    from runner.models import embedder

    home.mkdir(parents=True, exist_ok=True)
    if not (home / "scorers").exists():
        (home / "scorers").symlink_to(embedder.require().parent)
    return home


def copy_hf(pack_home: Path, home: Path) -> None:
    """Share the dequantized float32 folders, file by file (links: a build only reads them), so
    only the ONNX build step runs: their stamp names the verified weights by digest, not by path."""
    for folder in (pack_home / "hf").iterdir():
        (home / "hf" / folder.name).mkdir(parents=True)
        for f in folder.iterdir():
            (home / "hf" / folder.name / f.name).symlink_to(f)


def _calibration_subset(tmp_path_factory, transcripts: int) -> str:
    """`judge.qualification.calibration=...` holding the shipped set's first transcripts with
    their six answers of known order (the answers in other words have tests of their own)."""
    import yaml

    from judges import qualify

    data = yaml.safe_load(qualify.CALIBRATION.read_text())
    data["transcripts"] = data["transcripts"][:transcripts]
    keep = {*qualify.KINDS, qualify.INJECTED}
    for t in data["transcripts"]:
        t["answers"] = [a for a in t["answers"] if a["kind"] in keep]
    path = tmp_path_factory.mktemp("calibration") / f"{transcripts}-transcripts.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return f"judge.qualification.calibration={path}"


@pytest.fixture(scope="session")
def short_calibration(tmp_path_factory) -> str:
    """One transcript: tests about other judge behaviour still qualify their judge for real, on 6
    answers instead of 55."""
    return _calibration_subset(tmp_path_factory, 1)


@pytest.fixture(scope="session")
def two_transcript_calibration(tmp_path_factory) -> str:
    """Two transcripts (12 answers): enough for the qualification's bootstrap CI over transcripts."""
    return _calibration_subset(tmp_path_factory, 2)


@contextmanager
def mlflow_server(uri: str, artifact_root: Path, log_path: Path):
    """A real `mlflow server` over `uri` on a free 127.0.0.1 port, for as long as the block runs
    (start bounded at 120 s; always stopped). Yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = log_path.open("w")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
                               "--default-artifact-root", artifact_root.as_uri(), "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=3)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {log_path.read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
        log.close()
