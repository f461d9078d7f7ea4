"""Hydra callback around a multirun: the MLflow parent run (opened before the jobs, closed
after them) and the sweep's report, written from its jobs' summaries."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from runner import interrupts, outcomes
from runner.config import labels, launchers, secrets
from runner.config.errors import UserError, is_file_error, output_error
from runner.decide.render import write_decision
from runner.report.sweep import write_sweep_report
from runner.store import jobdir
from runner.store.jobdir import SUMMARY
from runner.track import tracking


class SweepReport(Callback):
    def __init__(self) -> None:
        self.started = time.time()
        self.tracker = None
        self.parent_run_id = None

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        refuse_stored_secrets(config)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        refuse_stored_secrets(config)  # before multirun.yaml, slmbench-sweep.json or the parent run
        self.started = time.time()
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        if config.tracking.enabled:
            self._open_parent(config, sweep_dir)
        # Every job reads this file, here or launched elsewhere: a launched job inherits neither
        # this process's environment nor its cwd.
        try:
            launchers.write_context(sweep_dir, self.tracker.uri if self.tracker else None, self.parent_run_id,
                                    labels.swept_keys(config.hydra.overrides.task))
        except OSError as exc:  # the sweep directory cannot be written: no job is started
            if not is_file_error(exc):
                raise
            outcomes.BROKEN_OUTPUT.append(str(output_error(exc.filename or sweep_dir, exc)))

    def _open_parent(self, config: DictConfig, sweep_dir: Path) -> None:
        interrupts.enter("tracking set-up")
        try:
            self.tracker = tracking.Tracker(config.tracking.uri, config.tracking.experiment)
            self.parent_run_id = self.tracker.start_parent(
                sweep_dir.name, {"sweep_dir": str(sweep_dir), "overrides": " ".join(config.hydra.overrides.task)})
        except Exception as exc:
            self.tracker = self.parent_run_id = None
            print(f"slmbench: MLflow tracking unavailable ({str(exc).splitlines()[0][:200]}); the sweep runs "
                  f"and writes its files: replay with `slmbench ui --log {sweep_dir}`", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        interrupts.enter("sweep report")
        sweep_dir = Path(config.hydra.sweep.dir)
        outcomes.OUTCOMES[:] = job_outcomes(sweep_dir, self.started)  # jobs may have run in other processes
        outcomes.STRICT.append(bool(config.run.strict))
        if outcomes.BROKEN_OUTPUT:
            outcomes.OUTCOMES.append("output-error")
        try:
            out = write_sweep_report(sweep_dir, plots=config.report.plots)
        except OSError as exc:
            if not is_file_error(exc):
                raise
            print(f"slmbench: {output_error(exc.filename or sweep_dir, exc)}", file=sys.stderr)
            outcomes.OUTCOMES.append("output-error")
            out = None
        if out is not None:
            interrupts.enter("decision")
            try:
                made = write_decision(sweep_dir, OmegaConf.to_container(config.selection, resolve=True),
                                      plots=config.report.plots)
                print(f"decision: {made['summary_sentence']}", file=sys.stderr)
            except UserError as exc:
                print(f"slmbench: decision: {exc}", file=sys.stderr)
            print(f"sweep report: {out}", file=sys.stderr)
        if self.tracker is None:
            return
        statuses = [jobdir.read_summary(j)["status"] for j in jobdir.job_dirs(sweep_dir)]
        interrupts.enter("tracking end")
        try:
            self.tracker.end_parent(self.parent_run_id, sweep_dir, "FINISHED" if "ok" in statuses else "FAILED")
        except Exception as exc:
            print(f"slmbench: MLflow tracking failed at the end of the sweep ({exc})", file=sys.stderr)


def refuse_stored_secrets(config: DictConfig) -> None:
    """Config files can carry what the command line may not (runner/config/secrets.py): checked
    on the composed config before Hydra writes `.hydra/` or `multirun.yaml`."""
    try:
        secrets.check_config(OmegaConf.to_container(config, resolve=False))
    except UserError as exc:
        print(f"slmbench: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def job_outcomes(sweep_dir: Path, since: float) -> list[str]:
    """The outcome of each job this sweep ran (its .hydra/ is rewritten when it starts), from its
    files: a job without a summary written since then stopped on a configuration error (the job
    reported it). Jobs of an earlier run into the same directory are not counted."""
    out = []
    for hydra_dir in sorted(sweep_dir.glob("*/.hydra")):
        if (hydra_dir / "config.yaml").stat().st_mtime < since - 1:
            continue
        path = hydra_dir.parent / SUMMARY
        if not path.is_file() or path.stat().st_mtime < since - 1:
            out.append("config-error")
            continue
        s = json.loads(path.read_text())
        out.append("partial" if s["partial"] else s["status"])
    return out
