"""MLflow logging: one run per job, nested under one parent run per sweep.

Everything logged is read from the job's files (summary.json, requests.jsonl, the
Hydra config), so a finished directory can be logged again later (`slmbench ui --log DIR`)
exactly as it was logged live. Tracking never fails a run: errors are reported with the
replay command.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from runner import interrupts
from runner.config.plan import written_config
from runner.config.secrets import SECRET, redact_url  # one definition of what looks like a secret
from runner.metrics import catalog
from runner.store import jobdir
from runner.store.jobdir import SUMMARY
from runner.track import views
from runner.track.retry import retry

REDACTED = "***"
ARTIFACTS = ["requests.jsonl", "scores.jsonl", "summary.json", "summary.csv", "report.md", "judgements.jsonl", "annotations.csv",
             "agreement.json", "job.json", "decision.json", "qualification.json", "capacity.json"]


def tracking_uri(uri: str | None) -> str:
    """Explicit uri, else $MLFLOW_TRACKING_URI, else a SQLite store under ./outputs (absolute path;
    the file store is deprecated in MLflow 3)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    db = (Path.cwd() / "outputs" / "mlflow.db").resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store go beside it; a server decides for itself."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return None


@contextmanager
def _creation_lock(uri: str):
    """The first touch of a new SQLite store creates its tables; two processes doing it at once
    fail ("table experiments already exists"). Serialize that first touch across processes."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    lock_path = Path(uri[len("sqlite:///"):]).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def flatten(node, prefix: str = "") -> dict[str, str]:
    """{'decoding': {'temperature': 0}} -> {'decoding.temperature': '0'}; secrets redacted."""
    out: dict[str, str] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    key = prefix[:-1]
    leaf = key.rsplit(".", 1)[-1]
    value = REDACTED if SECRET.match(leaf) and node not in (None, "") else node
    if isinstance(value, str):
        value = redact_url(value)  # a password in a URL from a config file
    if isinstance(value, list):
        value = json.dumps(value)
    out[key] = str(value)[:6000]
    return out


class Tracker:
    def __init__(self, uri: str | None, experiment: str):
        # An unreachable server must cost seconds, not MLflow's default minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from mlflow import MlflowClient

        self.uri = tracking_uri(uri)
        # A new store's tables are created here: cut in two by a Ctrl-C, the store would stay broken.
        with _creation_lock(self.uri), interrupts.deferred():
            self.client = MlflowClient(tracking_uri=self.uri)
            self.experiment_id = retry(self._experiment, experiment)

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            created = self.client.create_experiment(name, artifact_location=artifact_root(self.uri))
            views.prepare_experiment(self.client, created)  # opens on the jobs, key columns, charts
            return created
        except Exception:  # created by a parallel job in between
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def start_parent(self, name: str, tags: dict[str, str]) -> str:
        # A Ctrl-C between the two would leave a run nobody closes: it is raised once both are done.
        with interrupts.deferred():
            run = retry(self.client.create_run, self.experiment_id, run_name=name,
                        tags={**tags, "slmbench.kind": "sweep"})
            run_id = run.info.run_id
            atexit.register(self._kill_if_open, run_id)  # an interrupted sweep is not left RUNNING
        return run_id

    def _kill_if_open(self, run_id: str) -> None:
        try:
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, "KILLED")
        except Exception:
            pass

    def end_parent(self, run_id: str, sweep_dir: Path, status: str) -> None:
        for name in ("report.md", "summary.csv", "latency.png", "speed_vs_size.png", "quality_vs_speed.png",
                     "throughput_latency.png", "pareto.png", "multirun.yaml", "decision.json"):
            if (sweep_dir / name).is_file():
                retry(self.client.log_artifact, run_id, str(sweep_dir / name))
        retry(self.client.set_terminated, run_id, status)

    def log_job(self, job_dir: Path, config: dict, parent_run_id: str | None = None) -> str:
        s = jobdir.read_summary(job_dir)
        env = s.get("environment") or {}
        name = s.get("name") or s["model"]
        tags = {"slmbench.kind": "job", "model": s["model"], "name": name, "prompts": s["prompts"],
                "hardware": s["config"]["hardware"]["name"], "backend": s["config"]["backend"]["name"],
                "decoding": s["config"]["decoding"]["name"], "status": s["status"],
                "git.commit": str((env.get("git") or {}).get("commit")),
                "git.dirty": str((env.get("git") or {}).get("dirty")), "host": socket.gethostname(),
                "job_dir": str(job_dir.resolve()), **{f"runtime.{k}": str(v) for k, v in s.get("runtime", {}).items()
                                                      if not isinstance(v, list | dict)},
                **{f"version.{k}": str(v) for k, v in (env.get("packages") or {}).items() if v}}
        if s.get("error"):
            tags["error"] = s["error"][:5000]
        q = s.get("quality") or {}
        if q.get("source"):
            tags["quality.source"] = str(q["source"])
            tags["quality.trusted"] = str(bool(q.get("trusted")))
            if q.get("untrusted_reason"):
                tags["quality.untrusted_reason"] = str(q["untrusted_reason"])[:5000]
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        # The directory names the label; a sweep's duplicate labels add the override that differs.
        run_name = job_dir.name + name[len(s["model"]):]
        # The run spans the job itself (its Duration column is the job's wall time), not the logging.
        wall = s.get("job_wall") or {}
        start_ms, end_ms = (int(wall[k] * 1000) if wall.get(k) else None for k in ("start", "end"))
        run = retry(self.client.create_run, self.experiment_id, run_name=run_name, tags=tags, start_time=start_ms)
        run_id = run.info.run_id
        try:
            self._log_numbers(run_id, s, config, job_dir)
            self._log_files(run_id, job_dir)
            self._log_requests(run_id, s, job_dir)
        finally:  # a failure above still closes the run: it is never left RUNNING
            retry(self.client.set_terminated, run_id, "FINISHED" if s["status"] == "ok" else "FAILED", end_ms)
        return run_id

    def _log_numbers(self, run_id: str, s: dict, config: dict, job_dir: Path) -> None:
        """Params (the resolved config), the summary's numbers under their one name, and the
        per-request series (the charts show drift over a run), in as few batches as MLflow allows."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        params = [Param(k, v) for k, v in flatten(config).items()] + [Param("model.label", str(s["model"]))]
        # the numbers of summary.json under their one name (runner/metrics/catalog.py)
        metrics = [Metric(k, v, now, 0) for k, v in catalog.flatten(s).items()]
        ok = sorted(jobdir.ok_records(job_dir, graded=False), key=lambda r: r.get("t_start_s") or 0)
        for step, r in enumerate(ok):
            for k in ("ttft_s", "e2e_s", "decode_tps"):
                if r.get(k) is not None:
                    metrics.append(Metric(f"request.{k}", float(r[k]), now, step))
        # a capacity search's load points, one step each (capacity.<over> itself is in catalog.flatten)
        for step, p in enumerate((s.get("capacity") or {}).get("points") or []):
            for k, v in (("load", p["load"]), ("goodput", p["goodput"]), ("requests_per_s", p["requests_per_s"]),
                         ("passed", p["passed"]), ("stopped_early", p["stopped_early"]),
                         *((f"{m}.p95", x) for m, x in p["p95"].items())):
                if v is not None:
                    metrics.append(Metric(f"capacity.point.{k}", float(v), now, step))
        batches = max((len(params) + 99) // 100, (len(metrics) + 999) // 1000)
        for i in range(batches):
            retry(self.client.log_batch, run_id, params=params[i * 100:(i + 1) * 100],
                  metrics=metrics[i * 1000:(i + 1) * 1000])

    def _log_files(self, run_id: str, job_dir: Path) -> None:
        """The job's files as artifacts, in one call (each call costs a store round trip)."""
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory(prefix="slmbench-artifacts-") as tmp:
            stage = Path(tmp)
            for path in [*(job_dir / n for n in ARTIFACTS), *sorted(job_dir.glob("*.png"))]:
                if path.is_file():
                    shutil.copy2(path, stage / path.name)
            if (job_dir / ".hydra").is_dir():
                shutil.copytree(job_dir / ".hydra", stage / "hydra")
            retry(self.client.log_artifacts, run_id, str(stage))

    def _log_dataset_input(self, run_id: str, ps) -> None:
        """The prompt set as the run's dataset input (the run page's *Datasets used*), by its content hash."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        from runner.track import traces

        dataset = Dataset(name=ps.name, digest=traces.content_hash(ps), source_type="local",
                          source=json.dumps({"uri": str(ps.path)}))
        retry(self.client.log_inputs, run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "prompts")])])

    def _log_requests(self, run_id: str, s: dict, job_dir: Path) -> None:
        """Every measured request as a trace with its grades as assessments, and the prompt set as
        an evaluation dataset (runner/track/traces.py). After the job: never in its measured window."""
        from runner.config import prompts
        from runner.track import traces

        try:
            traces.log_traces(self.client, self.experiment_id, run_id, job_dir, s["model"])
            path = traces.prompts_path(job_dir)
            if path and Path(path).is_file():
                prompt_set = prompts.load(path)
                traces.log_prompt_dataset(self.client, self.experiment_id, prompt_set)
                self._log_dataset_input(run_id, prompt_set)
        except traces.TraceLoggingError as exc:
            retry(self.client.set_tag, run_id, "slmbench.traces", f"failed: {str(exc)[:4000]}")
            raise


def job_run(job_dir: Path, uri: str | None, experiment: str = "slmbench"):
    """(tracker, run) of the latest MLflow run logged from this job directory, or None when the
    store does not exist (a local SQLite file never created) or holds no such run."""
    uri = tracking_uri(uri or _job_tracking_uri(job_dir))
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return None
    tracker = Tracker(uri, experiment)
    path = str(job_dir.resolve()).replace("'", "\\'")
    runs = tracker.client.search_runs([tracker.experiment_id], f"tags.job_dir = '{path}'",
                                      order_by=["attributes.start_time DESC"], max_results=1)
    return (tracker, runs[0]) if runs else None


def _job_tracking_uri(job_dir: Path) -> str | None:
    """Where the job logged: its config's tracking.uri, else its sweep's store (slmbench-sweep.json)."""
    uri = (written_config(job_dir).get("tracking") or {}).get("uri")
    context = job_dir.parent / "slmbench-sweep.json"
    if not uri and context.is_file():
        uri = json.loads(context.read_text()).get("tracking_uri")
    return uri


def log_agreement(tracker: Tracker, run_id: str, result: dict, path: Path) -> None:
    """Judge-human agreement back onto the job's run: agreement.<aspect|overall>.<figure> metrics
    (kappa_qw, alpha, spearman, exact, within_1, n) and agreement.json (with the confusion matrices)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    jh = result["judge_human"]
    metrics = [Metric(f"agreement.{name}.{fig}", float(stats[fig]), now, 0)
               for name, stats in [*jh["aspects"].items(), ("overall", jh["overall"])]
               for fig in ("kappa_qw", "alpha", "spearman", "exact", "within_1", "n")
               if isinstance(stats.get(fig), int | float)]
    retry(tracker.client.log_batch, run_id, metrics=metrics)
    retry(tracker.client.log_artifact, run_id, str(path))


def replay(path: Path, uri: str | None, experiment: str) -> list[str]:
    """Log a finished job or sweep directory (e.g. after the tracking server was down)."""
    from runner.config.errors import UserError

    tracker = Tracker(uri, experiment)
    if (path / SUMMARY).is_file():
        return [tracker.log_job(path, written_config(path))]
    jobs = jobdir.job_dirs(path)
    if not jobs:
        raise UserError(f"{path}: not a job or sweep directory (no summary.json)")
    parent = tracker.start_parent(path.name, {"sweep_dir": str(path.resolve())})
    ids = [tracker.log_job(j, written_config(j), parent) for j in jobs]
    statuses = [jobdir.read_summary(j)["status"] for j in jobs]
    tracker.end_parent(parent, path, "FINISHED" if "ok" in statuses else "FAILED")
    return [parent, *ids]


RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def run_resolver(uri: str | None):
    """For `compare`: an MLflow run id -> a local directory laid out as a job (or, for a sweep's
    parent run, a sweep) dir, downloaded from the store's artifacts."""

    def resolve(ref: str) -> Path | None:
        if not RUN_ID.match(ref) or Path(ref).exists():
            return None
        import tempfile

        from runner.config.errors import UserError

        tracker = Tracker(uri, "slmbench")
        try:
            run = tracker.client.get_run(ref)
        except Exception:
            raise UserError(f"{ref}: no such MLflow run in {tracker.uri}") from None
        root = Path(tempfile.mkdtemp(prefix=f"slmbench-run-{ref[:8]}-"))
        if run.data.tags.get("slmbench.kind") == "sweep":
            children = tracker.client.search_runs([run.info.experiment_id],
                                                  f"tags.mlflow.parentRunId = '{ref}'", max_results=1000)
            for child in children:
                _download(tracker, child.info.run_id, root / child.info.run_name)
        else:
            _download(tracker, ref, root)
        return root

    return resolve


def _download(tracker: Tracker, run_id: str, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for name in (jobdir.REQUESTS, jobdir.SUMMARY, jobdir.SCORES, jobdir.JUDGEMENTS):  # grades join on read
        try:
            tracker.client.download_artifacts(run_id, name, str(into))
        except Exception:
            if name in (jobdir.REQUESTS, jobdir.SUMMARY):
                raise
