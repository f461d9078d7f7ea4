"""Hydra launchers (conf/hydra/launcher/): what each needs installed, and what a job launched
in another process or on another machine must be told.

A launched job shares nothing with the process that started the sweep: not its environment
(Ray workers start from the raylet's), not its working directory. So the sweep writes
SWEEP_CONTEXT into its (absolute) directory before any job starts, and each job reads it:
the tracking store, the MLflow parent run, and SLMBENCH_HOME.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path

from runner.config import paths
from runner.config.errors import UserError

SWEEP_CONTEXT = "slmbench-sweep.json"

# preset name -> (plugin module, the slmbench extra that installs it)
PLUGINS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "ray"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
}


def check(args: list[str]) -> str | None:
    """Before Hydra starts: the chosen launcher's plugin is installed, and a Ray address answers.
    Returns the launcher chosen on the command line, if any."""
    chosen = next((a.split("=", 1)[1] for a in args if a.split("=", 1)[0].lstrip("+") == "hydra/launcher"), None)
    if chosen in PLUGINS:
        module, extra = PLUGINS[chosen]
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            raise UserError(f"hydra/launcher={chosen} needs its Hydra plugin ({module.split('.')[-1]}), which is "
                            f"not installed: pip install 'slmbench[{extra}]'")
    address = next((a.split("=", 1)[1] for a in args
                    if a.lstrip("+").startswith("hydra.launcher.ray.init.address=")), None)
    if address and address not in ("auto", "local", "null"):
        _check_reachable(address)
    elif chosen == "ray":
        # A private Ray instance for this sweep: Ray's single-machine mode keeps it on loopback
        # (by default Ray on Linux binds and advertises the host's network address).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    return chosen


def explain(launcher: str, exc: Exception) -> tuple[str, int]:
    """A launcher's failure outside any job as one message, and the exit code: 2 for a bad
    configuration, 1 for anything else."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, HydraException | OmegaConfBaseException):
        return str(exc), 2
    cause = f" ({_last_line(exc.__cause__)})" if exc.__cause__ else ""
    message = f"hydra/launcher={launcher} failed: {type(exc).__name__}: {_last_line(exc)}{cause}"
    if launcher == "ray" and "Authentication" in message + repr(exc.__cause__):
        message += ("; the cluster uses token authentication: set RAY_AUTH_MODE=token here (the token is "
                    "read from ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)")
    return message, 1


def _check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Ray's own client retries for a long time on a dead address; a sweep should say so in seconds."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"hydra.launcher.ray.init.address={address}: expected HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"hydra.launcher.ray.init.address={address}: no Ray cluster answers there ({exc.strerror or exc}); "
                        f"start one with `ray start --head --node-ip-address=127.0.0.1 --port={port}` or fix "
                        f"the address") from None


PATH_KEYS = ("prompts.path", "model.source.path")  # files a user names on the command line


def absolute_paths(args: list[str]) -> list[str]:
    """`prompts.path=mine.json` made absolute here, where the user means it: a launched job
    resolves relative paths in its own working directory (a Ray worker's is not yours)."""
    out = []
    for a in args:
        key, sep, value = a.partition("=")
        if sep and key.lstrip("+") in PATH_KEYS and value and not value.startswith(("$", "[", "'", '"')):
            value = ",".join(p if not p or Path(p).is_absolute() else str(Path(p).resolve())
                             for p in value.split(","))
            a = f"{key}={value}"
        out.append(a)
    return out


def launcher_of(hc) -> tuple[str, bool]:
    """The launcher's short name, and whether it may run several jobs at once."""
    target = str(hc.launcher.get("_target_", ""))
    if target.endswith("BasicLauncher"):
        return "basic", False
    name = target.rsplit(".", 1)[-1].removesuffix("Launcher").lower() or "unknown"
    n_jobs = hc.launcher.get("n_jobs")
    if n_jobs is not None:
        return f"{name} (n_jobs={n_jobs})", n_jobs != 1
    return name, True


def write_context(sweep_dir: Path, tracking_uri: str | None, parent_run_id: str | None,
                  swept: list[str] | None = None) -> None:
    """`swept`: the keys the command line sweeps, which name a job apart from its siblings."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / SWEEP_CONTEXT).write_text(json.dumps({
        "tracking_uri": tracking_uri, "parent_run_id": parent_run_id, "swept": swept or [],
        # the cache this sweep uses (the env var or the default), so a job elsewhere uses the same one
        "slmbench_home": str(paths.home())}, indent=2))


def adopt_context(sweep_dir: Path) -> dict:
    """In a job: the sweep's context (empty outside a sweep); SLMBENCH_HOME is applied when unset."""
    path = sweep_dir / SWEEP_CONTEXT
    if not path.is_file():
        return {}
    ctx = json.loads(path.read_text())
    if ctx.get("slmbench_home") and not os.environ.get("SLMBENCH_HOME"):
        os.environ["SLMBENCH_HOME"] = ctx["slmbench_home"]
    return ctx


def _last_line(exc: BaseException) -> str:
    """The line that says what went wrong (a chained error's text may embed a traceback)."""
    lines = [x.strip() for x in str(exc).splitlines() if x.strip() and not x.startswith(" ")]
    said = [x for x in lines if "Error" in x and not x.startswith("Traceback")]
    return (said or lines or [type(exc).__name__])[-1][:300]
