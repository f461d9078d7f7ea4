"""`slmbench run`: the Hydra application. Everything after `run` is Hydra's command line."""

from __future__ import annotations

import os
import socket
import sys
import time
import warnings
from pathlib import Path

from omegaconf import DictConfig

from judges import grading
from judges.quality import quality_summary
from runner import interrupts
from runner.config import labels, launchers, paths, plan, schema, secrets
from runner.config.errors import OutputError, SweepAborted, UserError, is_file_error, output_error
from runner.config.resolvers import register_resolvers
from runner.measure.job import run_isolated, run_job
from runner.metrics import catalog
from runner.outcomes import BROKEN_OUTPUT, OUTCOMES, STRICT, exit_code
from runner.report import job as report
from runner.store import jobdir, summary
from runner.store.facts import Facts
from runner.validate import validate

# conf/hydra/launcher/X.yaml shares its name with the plugin's schema, so Hydra validates the
# preset against it (what we want) and warns, in the driver and in every launched job, that this
# matching is deprecated.
warnings.filterwarnings("ignore", message="(?s).*is validated against ConfigStore schema with the same name")



# A launcher's worker imports this module to unpickle `task`, and resolves the job's output
# directory (which uses ${model_label:...}) before calling it.
register_resolvers()


def task(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    started = time.time()
    interrupts.enter("job start-up")
    STRICT.append(bool(cfg.run.strict))
    register_resolvers()  # a launched job may run in a fresh process that never ran run_cli
    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    launcher, parallel = launchers.launcher_of(hc)
    context = launchers.adopt_context(Path(hc.sweep.dir)) if hc.mode == RunMode.MULTIRUN else {}
    if BROKEN_OUTPUT:  # the sweep directory could not be written: start no job
        print(f"slmbench: {BROKEN_OUTPUT[0]}; no job started", file=sys.stderr)
        OUTCOMES.append("output-error")
        raise SweepAborted
    try:
        _plan_measure_and_report(cfg, hc, job_dir, launcher, parallel, context, started)
    except (OSError, OutputError) as exc:
        # OSError: the job's own files (summary, report) could not be written; OutputError: a
        # record could not be appended (the file keeps whole lines only).
        if not isinstance(exc, OutputError) and not is_file_error(exc):
            raise
        error = exc if isinstance(exc, OutputError) else output_error(exc.filename or job_dir, exc)
        print(f"slmbench: {error}", file=sys.stderr)
        BROKEN_OUTPUT.append(str(error))
        OUTCOMES.append("output-error")
        if hc.mode == RunMode.MULTIRUN:  # the sweep's other jobs would write into the same directory
            raise SweepAborted from None


def _plan_measure_and_report(cfg: DictConfig, hc, job_dir: Path, launcher, parallel: bool, context: dict,
                             started: float) -> None:
    """The job's phases: its plan (the config is read here, once), every check that can fail before
    a request is sent, the measured and graded job (in its own process when its model runs in
    this one), then its summary, report and tracking."""
    from hydra.types import RunMode

    sweep = hc.mode == RunMode.MULTIRUN
    try:
        job = plan.build(cfg, hc.overrides.task)
        plan.settle_label(job_dir, job.label)
    except secrets.SecretError as exc:
        secrets.scrub_hydra_dir(job_dir / ".hydra")  # a swept group's secret reached Hydra's copy
        _config_error(exc)
        return
    except UserError as exc:
        _config_error(exc)
        return
    try:
        validate(job, launcher if parallel and sweep else None)
        if job.run.isolate and job.capabilities.in_process:
            interrupts.enter("measuring")  # in a child process, which names its own phases
            facts = run_isolated(measure_and_grade, job, job_dir)
        else:
            facts = measure_and_grade(job, job_dir)
        facts.job_wall = {"host": socket.gethostname(), "start": started, "end": time.time()}
        facts.distinguishing = labels.distinguishing(list(hc.overrides.task), context.get("swept", []), job.label)
        facts.launcher = launcher
    except OutputError:
        raise
    except UserError as exc:
        _config_error(exc)
        return
    _summarize_and_report(job, facts, job_dir, context, sweep)


def _config_error(exc: UserError) -> None:
    print(f"slmbench: {exc}", file=sys.stderr)
    OUTCOMES.append("config-error")


def _summarize_and_report(job: plan.JobPlan, facts: Facts, job_dir: Path, context: dict, sweep: bool) -> None:
    interrupts.enter("summary")
    grader = job.judge.grader
    graded = quality_summary(job_dir, jobdir.ok_records(job_dir, grader), grader, grading.family_warning(job))
    s = summary.build(job, facts, job_dir, graded)
    out = report.write_job_report(job_dir, plots=job.report.plots)
    if not sweep:  # a sweep decides once, over all its jobs
        from runner.decide.render import write_decision

        interrupts.enter("decision")
        try:
            write_decision(job_dir, job.selection, plots=job.report.plots)
        except UserError as exc:
            print(f"slmbench: decision: {exc}", file=sys.stderr)
    if job.tracking.enabled:
        interrupts.enter("job tracking")
        log_to_mlflow(job.tracking, job_dir, context)
    if job.baseline:
        from runner.store import baseline

        kept = baseline.save(job_dir, job.baseline, job_dir.name if sweep else None)
        print(f"baseline saved: {kept} (commit it; compare against it with `slmbench compare {job.baseline} RUN`)",
              file=sys.stderr)
    warning = report.truncation_warning(s)
    if warning:
        print(f"slmbench: warning: {s['name']}: {warning}", file=sys.stderr)
    outcome = "partial" if s["partial"] else s["status"]
    OUTCOMES.append(outcome)
    d = s["metrics"]["decode_tps"]
    speed = f"decode_tps.p50 {d['p50']:.1f} {catalog.unit('decode_tps')}, " if d else ""
    print(f"{s['name']} [{outcome}] n={s['n']} {speed}"
          f"{'error: ' + s['error'] + ' ' if s['error'] else ''}report: {out}", file=sys.stderr)


def measure_and_grade(job: plan.JobPlan, job_dir: Path) -> Facts:
    """The job's measured window, then its grading: after the candidate is unloaded, so grading
    never overlaps the measured window. A rerun with nothing left to measure still grades (e.g. a
    second judge on a finished job). Runs in the job's child process when it is isolated."""
    interrupts.enter("measuring")
    facts = run_job(job, job_dir)
    interrupts.enter("grading")
    facts.grading = grading.grade_job(job.judge, job.prompt_set, job_dir)
    return facts


def log_to_mlflow(tracking_plan, job_dir: Path, context: dict) -> None:
    """A job of a sweep logs where the sweep does, under its parent run, even from another host."""

    from runner.track import tracking

    try:
        tracker = tracking.Tracker(tracking_plan.uri or context.get("tracking_uri"), tracking_plan.experiment)
        tracker.log_job(job_dir, plan.written_config(job_dir), context.get("parent_run_id"))
    except Exception as exc:  # the run's files are complete; tracking can be replayed
        print(f"slmbench: MLflow tracking failed ({str(exc).splitlines()[0][:200]}); the run's files are "
              f"complete: replay with `slmbench ui --log {job_dir}`", file=sys.stderr)


def _report_output_errors_in_one_line() -> None:
    """Hydra writes each job's .hydra/ itself; on a full disk (or a read-only or vanished output
    directory) its handler would print a traceback. Wrap it: an OSError becomes one line."""
    from hydra._internal import utils as hydra_utils

    original = getattr(hydra_utils.run_and_report, "__wrapped__", hydra_utils.run_and_report)

    def run_and_report(func):
        def guarded():
            try:
                return func()
            except OSError as exc:
                if not is_file_error(exc):
                    raise
                where = exc.filename or "a job's .hydra/ (Hydra's copy of its config)"
                print(f"slmbench: {output_error(where, exc)}", file=sys.stderr)
                sys.exit(1)
            except Exception as exc:
                cause = _user_error_in(exc)
                if cause is None:
                    raise
                print(f"slmbench: {cause}", file=sys.stderr)  # e.g. from a resolver, wrapped by OmegaConf
                sys.exit(2)
        return original(guarded)

    run_and_report.__wrapped__ = original
    hydra_utils.run_and_report = run_and_report


# Hydra's flags that take a value (`--info` takes one optionally, from INFO_VALUES).
VALUED_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir",
                "-cd", "--experimental-rerun"}
INFO_VALUES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def _user_error_in(exc: BaseException) -> UserError | None:
    """The UserError an exception was raised from (OmegaConf wraps a resolver's), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def split_hydra_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Flags (with their values) apart from overrides: Hydra's parser takes the overrides as one
    contiguous run, so the ones slmbench adds must join the user's, not follow a flag."""
    options, overrides = [], []
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("-"):
            overrides.append(a)
        elif a in VALUED_FLAGS and i + 1 < len(args):
            options += args[i:i + 2]
            i += 1
        elif a in ("--info", "-i"):  # its value is optional: give it one, so no override is taken for it
            has_value = i + 1 < len(args) and args[i + 1] in INFO_VALUES
            options += [a, args[i + 1] if has_value else "all"]
            i += has_value
        else:
            options.append(a)  # -m, --multirun, --cfg=job, --config-name=x, ...
        i += 1
    return options, overrides


def run_cli(args: list[str]) -> int:
    import hydra

    schema.register()
    register_resolvers()
    user_conf = paths.user_conf_dir()
    (user_conf / "model").mkdir(parents=True, exist_ok=True)
    # Imported models live in the user's config dir; make them selectable as model=NAME.
    extra = [] if any(a.startswith("hydra.searchpath") for a in args) else [
        f"hydra.searchpath=[file://{user_conf}]"]
    from runner.config import selection

    args = selection.hydra_overrides(args)  # selection.max.X.p95=... needs ++ to reach a dict
    args = launchers.absolute_paths(args)
    launcher = launchers.check(args)
    # Under a launcher plugin, failures outside any job (connecting to a cluster, submitting)
    # would reach Hydra's handler, which prints a traceback: have them raised to us instead.
    catch = launcher is not None and not os.environ.get("HYDRA_FULL_ERROR")
    if catch:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    OUTCOMES.clear()
    STRICT.clear()
    BROKEN_OUTPUT.clear()
    options, overrides = split_hydra_args(args)
    secrets.check_overrides(overrides)  # before Hydra writes .hydra/ or multirun.yaml
    secrets.check_environment()
    argv, sys.argv = sys.argv, ["slmbench run", *options, *overrides, *extra]
    _report_output_errors_in_one_line()
    try:
        main = hydra.main(config_path=str(paths.CONF_DIR), config_name="config", version_base="1.3")(task)
        main()
    except SystemExit as exc:  # Hydra reports config errors itself, then exits
        if exc.code not in (0, None):
            return int(exc.code) if isinstance(exc.code, int) else 2
    except SweepAborted:  # a job said why (its output directory cannot be written)
        print("slmbench: sweep stopped: its other jobs were not started", file=sys.stderr)
        return 1
    except Exception as exc:
        if not catch:
            raise
        message, code = launchers.explain(launcher, exc)
        print(f"slmbench: {message}", file=sys.stderr)
        return code
    finally:
        sys.argv = argv
        if catch:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    asked = {o.split("=", 1)[0] for o in options}
    if asked & {"--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--version", "--shell-completion",
                "-sc"}:
        return 0  # Hydra printed what was asked; nothing ran
    return exit_code(OUTCOMES, any(STRICT))
