"""The `hardware` option: check the requested device exists before a job loads anything."""

from __future__ import annotations

from runner.backends.base import BackendError
from runner.environment import gpu_names

# hardware.execution_provider -> the ONNX Runtime provider that must be available
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                 "dml": "DmlExecutionProvider", "webgpu": "WebGpuExecutionProvider"}


def check(hardware, backend_name: str) -> dict:
    """Return what the job runs on; raise BackendError (the job's recorded cause) if it cannot.

    For a remote backend the device is the server's, so it is recorded, not checked."""
    info = {"device": hardware.device, "execution_provider": hardware.execution_provider, "gpu": gpu_names()}
    if hardware.device != "gpu" or backend_name != "foundry":
        return info
    if not info["gpu"]:
        raise BackendError("hardware=gpu: no GPU on this machine (nvidia-smi finds none); "
                           "use hardware=cpu or a backend on a GPU host")
    import onnxruntime

    wanted = ORT_PROVIDERS.get(hardware.execution_provider, hardware.execution_provider)
    available = onnxruntime.get_available_providers()
    if wanted not in available:
        raise BackendError(f"hardware=gpu: {wanted} is not available in onnxruntime "
                           f"(available: {', '.join(available)})")
    return info
