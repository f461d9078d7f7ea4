"""What the numbers were measured on: machine, OS, packages, code version."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import cache
from importlib import metadata

import psutil

from runner.config.paths import PROJECT_ROOT

PACKAGES = ["slmbench", "foundry-local-sdk", "onnxruntime", "onnxruntime-genai-core", "onnxruntime-genai", "openai",
            "hydra-core", "omegaconf", "numpy", "pandas", "mlflow"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    """NVIDIA GPUs visible to the driver (empty when none)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()] if out.returncode == 0 else []


def git_state() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def providers() -> dict:
    """Execution providers: what this machine's onnxruntime can run (in-process models need the
    one `hardware` asks for) and what Foundry Local can discover and register (empty offline
    on Linux: its EP downloads come from the internet)."""
    out: dict = {"onnxruntime": None, "foundry_discoverable": None}
    try:
        import onnxruntime

        out["onnxruntime"] = list(onnxruntime.get_available_providers())
    except Exception as exc:  # a broken native install is a fact worth recording, not a crash
        out["onnxruntime_error"] = str(exc)[:200]
    try:
        from runner.models import catalog

        out["foundry_discoverable"] = [{"name": e.name, "registered": e.is_registered}
                                       for e in catalog.manager().discover_eps()]
    except Exception as exc:
        out["foundry_error"] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return out


@cache
def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu_names(),
        "execution_providers": providers(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "host": platform.node(),
        "packages": versions,
        "git": git_state(),
    }


def env_text(env: dict, presets: list[dict]) -> str:
    """`slmbench env`: what this machine can run models on, and with which runtime versions."""
    eps = env["execution_providers"]
    found = eps.get("foundry_discoverable")
    lines = [f"machine: {env['cpu']}, {env['cores']} cores, {env['ram_gb']} GiB RAM; {env['os']}; "
             f"Python {env['python']}",
             f"GPUs (nvidia-smi): {', '.join(env['gpu']) or 'none'}",
             f"onnxruntime execution providers: {', '.join(eps.get('onnxruntime') or []) or 'unknown'}",
             "Foundry Local discoverable EPs: " + (", ".join(
                 f"{e['name']}{' (registered)' if e['registered'] else ''}" for e in found) if found else
                 "none" if found is not None else f"unknown ({eps.get('foundry_error')})"),
             "", "hardware presets (conf/hardware/):"]
    for p in presets:
        state = "usable here" if p["usable_in_process"] else f"NOT usable here: {p['reason']}"
        lines.append(f"  {p['name']}: device {p['device']}, provider {p['execution_provider']} - {state}")
    lines += ["", "runtime versions:"]
    lines += [f"  {k} {v}" for k, v in env["packages"].items() if v]
    git = env["git"]
    lines.append(f"  slmbench git {(git['commit'] or 'unknown')[:12]}{' (dirty)' if git['dirty'] else ''}")
    return "\n".join(lines)
