"""A model's stated memory need against what the machine has free, checked before a build or a load,
so that a model too big for the machine is one line naming both numbers instead of the OOM killer.

Needs are in MB (10^6 bytes). A pack model states them in its YAML (`build_memory_mb`,
`run_memory_mb`: measured peaks plus a margin); an import's need is estimated from its source's
size (`import_need_mb`, formula below)."""

from __future__ import annotations

import json
from pathlib import Path

import psutil

from runner.config.errors import UserError

# Fixed cost of a conversion child (Python, torch, transformers, the builder), MB: measured 1.0-1.5 GB.
CONVERSION_BASE_MB = 1500
# A GGUF's conversion peak per MB of the file: Qwen2.5 1.5B Q4_K_M (1117 MB) peaked at 5.8 GB
# dequantizing to bfloat16, 6.3 GB building int4 and 3.8 GB checking fidelity; SmolLM2 (98 MB, float32
# route) at 1.8 GB. 5x the file plus the fixed cost covers both (7.1 and 2.0 GB).
GGUF_PEAK_PER_MB = 5.0
# An HF folder's conversion peak: its weights in float32 once (a float32 folder's fidelity reference),
# plus the torch copy the builder holds.
HF_PEAK_PER_FP32_MB = 1.3


def available_mb() -> float:
    """Memory the kernel can give a new process without swapping, MB (psutil `available`)."""
    return psutil.virtual_memory().available / 1e6


def shortfall(alias: str, what: str, need_mb: float | None) -> str | None:
    """Why `what` (e.g. "building it") cannot start: its stated need exceeds the available memory."""
    if need_mb is None:
        return None
    free = available_mb()
    if need_mb <= free:
        return None
    return (f"{alias}: {what} needs {need_mb:,.0f} MB of memory and this machine has {free:,.0f} MB available; "
            f"free memory or choose a smaller model")


def check(alias: str, what: str, need_mb: float | None) -> None:
    if message := shortfall(alias, what, need_mb):
        raise UserError(message)


def import_need_mb(kind: str, path: Path) -> float | None:
    """Estimated peak of converting a source (formulas above); None for a built ONNX folder."""
    if kind == "gguf":
        return CONVERSION_BASE_MB + GGUF_PEAK_PER_MB * path.stat().st_size / 1e6
    if kind == "hf":
        stored = sum(p.stat().st_size for p in path.glob("*.safetensors")) or \
            sum(p.stat().st_size for p in path.glob("*.bin"))
        return CONVERSION_BASE_MB + HF_PEAK_PER_FP32_MB * stored * 4 / _bytes_per_weight(path) / 1e6
    return None


def _bytes_per_weight(folder: Path) -> int:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return 4
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    return 4 if "32" in dtype else 2
