"""The `hardware` option: the execution provider asked for, whether this machine has it, and the
one the model really ran on. No CPU figure may be labelled GPU: a job whose model would run (or
ran) on another provider than the one asked for fails with that cause.

Provider names are ONNX Runtime GenAI's short names (`genai_config.json` session options):
cpu, cuda, dml, webgpu, qnn, openvino, nvtensorrtrtx.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from runner.backends.base import BackendError
from runner.config.environment import gpu_names

# short name -> the ONNX Runtime provider that must be available for it
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                 "dml": "DmlExecutionProvider", "webgpu": "WebGpuExecutionProvider",
                 "qnn": "QNNExecutionProvider", "openvino": "OpenVINOExecutionProvider",
                 "nvtensorrtrtx": "NvTensorRTRTXExecutionProvider"}
DEVICE_OF = {"cpu": "cpu", "cuda": "gpu", "dml": "gpu", "webgpu": "gpu", "qnn": "npu", "openvino": "cpu",
             "nvtensorrtrtx": "gpu"}


def short_name(provider: str) -> str:
    """`CUDAExecutionProvider`, `cuda`, `CUDA` -> `cuda`; an unknown name is returned lower-cased."""
    p = re.sub(r"executionprovider$", "", provider.strip().lower())
    return {"tensorrt": "nvtensorrtrtx", "nvtensorrt": "nvtensorrtrtx"}.get(p, p)


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def check(hardware, in_process: bool) -> dict:
    """Before anything loads: the provider asked for exists here (for a model run in this process).
    Returns what is asked; raises BackendError (the job's recorded cause) naming what is available.
    For an endpoint the device is the server's: it is checked after load, from what it reports."""
    info = {"device": hardware.device, "execution_provider": hardware.execution_provider, "gpu": gpu_names()}
    if not in_process:
        return info
    wanted = ORT_PROVIDERS[short_name(hardware.execution_provider)]
    available = available_providers()
    if wanted not in available:
        import onnxruntime

        gpus = ", ".join(info["gpu"]) or "none found by nvidia-smi"
        raise BackendError(f"hardware={hardware.name} asks for the {hardware.execution_provider} execution "
                           f"provider ({wanted}), which this machine's onnxruntime {onnxruntime.__version__} "
                           f"does not have (available: {', '.join(available)}; GPUs: {gpus}); use hardware=cpu "
                           f"or run the model on a host that has it (backend=openai)")
    return info


def folder_provider(folder: str | Path) -> str:
    """The provider an ONNX Runtime GenAI folder runs on: the first of its decoder session's
    `provider_options`, or cpu when there are none (ORT GenAI's default)."""
    cfg = json.loads((Path(folder) / "genai_config.json").read_text())
    options = cfg.get("model", {}).get("decoder", {}).get("session_options", {}).get("provider_options") or []
    for entry in options:
        if isinstance(entry, dict) and entry:
            return short_name(next(iter(entry)))
    return "cpu"


def reported_provider(entry: dict) -> str | None:
    """What an endpoint's /v1/models entry says the model runs on, where it says (Foundry Local
    lists `runtime.executionProvider`; others `execution_provider` or a device type)."""
    def find(node, depth=0):
        if not isinstance(node, dict) or depth > 2:
            return None
        for k, v in node.items():
            key = k.lower().replace("_", "")
            if key == "executionprovider" and isinstance(v, str) and v:
                return short_name(v)
        for k, v in node.items():
            key = k.lower().replace("_", "")
            if key in ("devicetype", "device") and isinstance(v, str) and v:
                return {"cpu": "cpu", "gpu": "gpu", "npu": "npu"}.get(v.lower())
        for v in node.values():
            found = find(v, depth + 1)
            if found:
                return found
        return None

    return find(entry)


def verify(hardware, ran_on: str | None, source: str) -> dict:
    """Compare the provider that ran (or will run) with the one asked for; BackendError on a
    mismatch. `ran_on` None: the backend cannot tell (recorded as unverified)."""
    asked = short_name(hardware.execution_provider)
    record = {"asked": asked, "ran_on": ran_on, "source": source, "verified": ran_on is not None}
    if ran_on is None:
        return record
    # An endpoint may report only an accelerator's device type (gpu, npu), not its provider.
    same = ran_on == asked or (ran_on in ("gpu", "npu") and DEVICE_OF.get(asked) == ran_on)
    if not same:
        raise BackendError(f"hardware={hardware.name} asked for the {asked} execution provider, but the model "
                           f"runs on {ran_on} ({source}): its figures would be labelled with the wrong device")
    return record


def hardware_presets() -> list[dict]:
    """Each conf/hardware/*.yaml: whether an in-process model could run on it here, and why not."""
    import yaml

    from runner.config.paths import CONF_DIR

    out = []
    for path in sorted((CONF_DIR / "hardware").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text()) or {}
        preset = type("Preset", (), {"name": path.stem, "device": raw.get("device", "cpu"),
                                     "execution_provider": raw.get("execution_provider", "cpu")})
        try:
            check(preset, in_process=True)
            usable, why = True, ""
        except BackendError as exc:
            usable, why = False, str(exc)
        out.append({"name": path.stem, "device": preset.device, "execution_provider": preset.execution_provider,
                    "usable_in_process": usable, "reason": why})
    return out
