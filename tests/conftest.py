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


# `make test`'s first pass runs pytest-xdist workers side by side on two cores. A worker's NumPy
# (the notes scorer's embedding model) would start a BLAS thread per core, and the workers' threads
# then spin against each other: measured on one test's run (two workers), 23.7 s of CPU with a
# thread per core and 18.6 s with one. One BLAS thread per worker (and per process it starts).
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

# Pass 1 (`make test`: pytest-xdist) hands a worker a whole module at a time, so
# that a module's tests share its module-scoped set-up (a sweep, a server, a cache) - except the
# modules in DEALT_BY_TEST, whose tests share nothing but the session's pack: those are dealt one
# test at a time, so that no worker ends the pass running a long module alone. Units go out longest
# first (LONGEST_FIRST: a module, or a dealt test, by their wall time in a profile of pass 1,
# 2026-12-07; the rest follow in file order): the workers then finish together. test_launchers
# stays whole: its Ray test stops every Ray cluster on the machine (`ray stop --force`).
DEALT_BY_TEST = {"test_models_cli", "test_judges", "test_quality_decision", "test_tracking", "test_run",
                 "test_secrets"}
LONGEST_FIRST = [
    "test_launchers",
    "test_quality_decision::test_a_checklist_judge_is_qualified_first_and_never_steers_to_a_bad_answer",
    "test_benchmarks", "test_judges::test_real_grading_with_a_pack_judge", "test_models_cli::test_import_gguf_converts",
    "test_tracking::test_compare_by_mlflow_run_id_and_by_baseline_name", "test_compare", "test_mlflow_sweep",
    "test_fidelity", "test_verdict", "test_device", "test_tracking::test_ui_serves_the_store", "test_labels",
    "test_models_cli::test_half_built_model_is_rebuilt_then_skipped",
    "test_models_cli::test_import_hf_folder_converts_checks_and_runs", "test_meaning", "test_answers",
    "test_mlflow_views", "test_run::test_failing_job_is_recorded_and_sweep_goes_on",
    "test_run::test_killed_run_resumes_without_loss_or_duplicates", "test_run::test_multirun_sweeps_two_pack_models",
    "test_qualify", "test_judges::test_judge_endpoint_down_is_recorded_per_record",
    "test_quality_decision::test_notes_scorer_orders_a_sweep_and_the_decision_follows", "test_interruptions",
    "test_tracking::test_parallel_jobs_share_one_sqlite_store", "test_load", "test_notes",
]


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: present when the suite runs on workers
def pytest_xdist_make_scheduler(config, log):
    """With --dist loadscope (make test's): a module's tests go to one worker, a dealt module's one
    test at a time. Other --dist modes keep xdist's own scheduler."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleOrTest(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if Path(module).stem in DEALT_BY_TEST else module

    return ModuleOrTest(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def unit(item: pytest.Item) -> str:
        module = item.module.__name__ if item.module else ""
        return f"{module}::{item.name}" if module in DEALT_BY_TEST else module

    items.sort(key=lambda item: rank.get(unit(item), len(rank)))


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600,
            input: str | None = None, tracked: bool = False, plots: bool = False) -> subprocess.CompletedProcess:
    """`slmbench ARGS` as a user types it. A `run` logs to MLflow only when the test reads MLflow
    (tracked=True) or sets tracking.* itself: importing MLflow and logging a job cost 3.6 s of CPU
    per run (a one-round smoke run on the pack model: 8.9 s tracked, 5.3 s untracked). Likewise it
    draws its PNGs only when the test looks at them (plots=True) or sets report.* itself: ~0.7 s of
    CPU per job process, ~140 job processes in the suite."""
    if args and args[0] == "run" and not tracked and not any(a.startswith("tracking.") for a in args):
        args = (*args, "tracking.enabled=false")
    if args and args[0] == "run" and not plots and not any(a.startswith("report.") for a in args):
        args = (*args, "report.plots=false")
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

    pack.build_pack(log=lambda s: None, small=True)  # no-op when `make test` already built it
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


# Two short meetings (~800 characters each, under half the shipped transcripts), each with the six
# answers of known order the shipped set gives (notes orders them: pooled Spearman +1.00): a pack
# model judging a whole transcript costs seconds a grade in proportion to its length.
SHORT_CALIBRATION = ROOT / "tests" / "data" / "short_calibration.yaml"


def _calibration_subset(tmp_path_factory, transcripts: int) -> str:
    """`judge.qualification.calibration=...` holding the short set's first transcripts."""
    import yaml

    data = yaml.safe_load(SHORT_CALIBRATION.read_text())
    data["transcripts"] = data["transcripts"][:transcripts]
    path = tmp_path_factory.mktemp("calibration") / f"{transcripts}-transcripts.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return f"judge.qualification.calibration={path}"


@pytest.fixture(scope="session")
def short_calibration(tmp_path_factory) -> str:
    """One short transcript: tests about other judge behaviour still qualify their judge for real,
    on 6 answers instead of the shipped set's 55."""
    return _calibration_subset(tmp_path_factory, 1)


@pytest.fixture(scope="session")
def two_transcript_calibration(tmp_path_factory) -> str:
    """Two short transcripts (12 answers): enough for the qualification's bootstrap CI over transcripts."""
    return _calibration_subset(tmp_path_factory, 2)


def free_port() -> int:
    """A port nothing on 127.0.0.1 holds now (it may be taken before it is used: see mlflow_server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server(uri: str, artifact_root: Path, log_path: Path, proxy_artifacts: bool = False):
    """A real `mlflow server` over `uri` on a free 127.0.0.1 port, for as long as the block runs
    (each of at most three starts bounded at 120 s; always stopped). Yields its base URL.
    Artifacts go to `artifact_root`, through the server with `proxy_artifacts`
    (--artifacts-destination), else written by clients (--default-artifact-root). A port found free can be bound by another worker's server before
    MLflow binds it: MLflow then exits, and a server that is not MLflow may answer /health, so the
    answer must be MLflow's ("OK") from a server still running, or another port is tried."""
    store = ["--artifacts-destination", str(artifact_root)] if proxy_artifacts else \
        ["--default-artifact-root", artifact_root.as_uri()]
    with log_path.open("a") as log:
        for _ in range(3):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, *store,
                                       "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                      stdout=log, stderr=subprocess.STDOUT)
            try:
                if _answers_as_mlflow(base, server, deadline=time.monotonic() + 120):
                    yield base
                    return
            finally:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait(timeout=30)
    raise RuntimeError(f"mlflow server did not start: {log_path.read_text()[-2000:]}")


def _answers_as_mlflow(base: str, server: subprocess.Popen, deadline: float) -> bool:
    while server.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=3) as r:
                if r.read().strip() == b"OK" and server.poll() is None:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False
