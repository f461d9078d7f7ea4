"""`slmbench models ...`: list, pack, import, run, info, remove, cache."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

from tabulate import tabulate

from runner.config import paths
from runner.config.errors import UserError
from runner.config.schema import ModelConfig, SourceConfig
from runner.models import catalog, embedder, fidelity, memory, pack, registry

ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
BFLOAT16_ABOVE_BYTES = 500e6  # GGUF imports above this dequantize to bfloat16 (the pack's small models: float32)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, build, import and try models on Foundry Local")
    ms = p.add_subparsers(dest="models_cmd", required=True)
    ls = ms.add_parser("list", help="registered models and whether they are built and cached")
    ls.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    pk = ms.add_parser("pack", help="build the default model pack (offline, from PyPI wheels)")
    pk.add_argument("aliases", nargs="*", help=f"subset to build (default: {', '.join(pack.PACK)})")
    pk.add_argument("--small", action="store_true",
                    help=f"the pack without its large model{'s' if len(pack.LARGE) > 1 else ''} "
                         f"({', '.join(pack.LARGE)}): what the test suite needs")
    im = ms.add_parser("import", help="bring your own model: a GGUF file, HF folder or ORT GenAI folder")
    im.add_argument("path")
    im.add_argument("--alias", required=True)
    im.add_argument("--precision", choices=["int4", "int8", "fp32"], default=None)
    im.add_argument("--license", default="unknown")
    im.add_argument("--context-length", type=int, default=2048)
    rn = ms.add_parser("run", help="stream one answer (or chat) with a model")
    rn.add_argument("alias")
    rn.add_argument("--prompt", help="one prompt; without it, an interactive chat")
    rn.add_argument("--system", default=None)
    rn.add_argument("--max-tokens", type=int, default=256)
    rn.add_argument("--temperature", type=float, default=0.0)
    info = ms.add_parser("info", help="one model's registry entry and build state")
    info.add_argument("alias")
    rm = ms.add_parser("remove", help="unregister and delete the built folder (never the source)")
    rm.add_argument("alias")
    ms.add_parser("cache", help="cache location and disk use per model")


def main(args: argparse.Namespace) -> int:
    return {"list": cmd_list, "pack": cmd_pack, "import": cmd_import, "run": cmd_run,
            "info": cmd_info, "remove": cmd_remove, "cache": cmd_cache}[args.models_cmd](args)


def _state(spec: ModelConfig) -> dict:
    local = spec.source.kind != "remote"
    built = local and pack.is_built(spec)
    registered = local and catalog.find(spec.id) is not None
    folder = pack.model_folder(spec) if local else None
    size = pack.folder_bytes(folder) / 1e6 if built else spec.size_mb
    return {"alias": spec.alias, "id": spec.id, "precision": spec.precision,
            "size_mb": round(size, 1) if size is not None else None, "license": spec.license,
            "license_source": spec.license_source,
            "capabilities": list(spec.capabilities), "cached": bool(built and registered),
            "built": built, "registered": registered, "path": str(folder) if folder else None,
            "params_m": spec.params_m, "context_length": spec.context_length, "family": spec.family,
            "fidelity": pack.fidelity_of(spec) if built else None}


def _fidelity_cell(f: dict | None) -> str:
    if f is None:
        return "-"
    if not f.get("checked"):
        return "not checked"
    return f"{'SUSPECT' if f['suspect'] else 'ok'} {f['top1_agreement']:.2f}"


def cmd_list(args) -> int:
    rows = [{**_state(spec), "role": "candidate"} for spec in registry.all_models().values()]
    rows.append(embedder.state())  # the notes scorer's embedding model: graded with, never benchmarked
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [[r["alias"], r["role"], r["id"], r["precision"], r["size_mb"],
              r["license"] + (f" ({r['license_source']})" if r.get("license_source") else ""),
              ",".join(r.get("capabilities") or ["embeddings"]),
              "yes" if r["cached"] else ("built" if r["built"] else "no"), _fidelity_cell(r.get("fidelity"))]
             for r in rows]
    print(tabulate(table, headers=["alias", "role", "id", "precision", "size MB", "license", "capabilities",
                                   "cached", "fidelity (top-1)"]))
    return 0


def cmd_pack(args) -> int:
    t0 = time.perf_counter()
    if args.small and args.aliases:
        raise UserError("models pack: name models or --small, not both")
    built = pack.build_pack(args.aliases or None, log=lambda s: print(s, flush=True), small=args.small)
    print(f"pack ready: {len(built)} models in {time.perf_counter() - t0:.1f} s (cache: {paths.home()})")
    return 0


def detect_kind(path: Path) -> str:
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_file():
        try:
            with path.open("rb") as fh:
                magic = fh.read(4)
        except OSError as exc:
            raise UserError(f"{path}: cannot read ({exc.strerror})") from None
        if magic == b"GGUF":
            return "gguf"
        raise UserError(f"{path}: not a GGUF file (a GGUF file starts with the bytes 'GGUF')")
    if (path / "genai_config.json").is_file():
        return "onnx"
    weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    if (path / "config.json").is_file():
        if weights:
            return "hf"
        raise UserError(f"{path}: config.json but no weights (*.safetensors or *.bin): not a complete Hugging "
                        f"Face model folder")
    if weights:
        raise UserError(f"{path}: weights but no config.json: not a Hugging Face model folder")
    raise UserError(f"{path}: not a GGUF file, a Hugging Face model folder (config.json + weights) "
                    f"or an ONNX Runtime GenAI folder (genai_config.json)")


def cmd_import(args) -> int:
    if not ALIAS_RE.match(args.alias):
        raise UserError(f"alias '{args.alias}' must be lowercase letters, digits, '.', '_' or '-'")
    if args.alias in registry.all_models():
        raise UserError(f"alias '{args.alias}' already exists (choose another, or `slmbench models remove`)")
    path = Path(args.path).expanduser().resolve()
    kind = detect_kind(path)
    if kind != "onnx" and args.precision is None:
        args.precision = "int4"
    need = memory.import_need_mb(kind, path)
    memory.check(args.alias, "converting it (estimated)", need)  # before anything is written
    # A float32 copy of a big model is what exhausts memory (a 1.1 GB GGUF: 17 GB peak); bfloat16
    # halves it at no visible cost to a 4- or 8-bit build.
    dtype = "bfloat16" if kind == "gguf" and path.stat().st_size > BFLOAT16_ABOVE_BYTES else "float32"
    spec = ModelConfig(alias=args.alias, id=f"{args.alias}-generic-cpu:1", precision=args.precision or "as-built",
                       context_length=args.context_length, license=args.license,
                       capabilities=["chat", "imported"], build_memory_mb=round(need) if need else None,
                       source=SourceConfig(kind=kind, path=str(path), dequantize_dtype=dtype))
    built = pack.build(spec, log=lambda s: print(s, flush=True))
    pack.check_fidelity(spec, log=lambda s: print(s, flush=True))
    spec = replace(spec, size_mb=round(pack.folder_bytes(built.folder) / 1e6, 1))
    target = registry.write_user_model(spec)
    print(f"imported {args.alias} ({kind}) as {spec.id}; config {target}; "
          f"use it with `slmbench run model={args.alias}`")
    return 0


def _loaded_backend(alias: str):
    from runner.backends.foundry import FoundryBackend

    spec = registry.get(alias)
    if not pack.is_built(spec):
        raise UserError(f"model '{alias}' is not built; run `slmbench models pack {alias}`")
    pack.build(spec, log=lambda s: None)  # registers it if the registration was lost
    backend = FoundryBackend(spec.id)
    return backend, backend.load()


def cmd_run(args) -> int:
    from runner.backends import BackendError, GenParams
    from runner.metrics.request import request_metrics, timing_line

    if args.max_tokens < 1 or args.temperature < 0:
        raise UserError("--max-tokens must be >= 1 and --temperature >= 0")
    try:
        backend, load_s = _loaded_backend(args.alias)
    except BackendError as exc:
        raise UserError(str(exc)) from None
    params = GenParams(max_tokens=args.max_tokens, temperature=args.temperature, seed=42)
    history = [{"role": "system", "content": args.system}] if args.system else []

    def ask(text: str) -> None:
        history.append({"role": "user", "content": text})
        c = backend.chat(history, params, on_delta=lambda d: print(d, end="", flush=True))
        history.append({"role": "assistant", "content": c.text})
        print()
        print(f"[{timing_line(request_metrics(c))} | load {load_s:.2f} s]", file=sys.stderr)

    try:
        if args.prompt is not None:
            ask(args.prompt)
            return 0
        print(f"chatting with {args.alias} (empty line or Ctrl-D to quit)", file=sys.stderr)
        while True:
            try:
                line = input("> ")
            except EOFError:
                return 0
            if not line.strip():
                return 0
            ask(line)
    except BackendError as exc:
        raise UserError(f"{args.alias}: {exc}") from None
    finally:
        backend.unload()


def cmd_info(args) -> int:
    spec = registry.get(args.alias)
    from omegaconf import OmegaConf

    print(OmegaConf.to_yaml(OmegaConf.structured(spec)).rstrip())
    state = _state(spec)
    print(f"built: {state['built']}  registered: {state['registered']}  path: {state['path']}  "
          f"size_mb: {state['size_mb']}")
    print(f"source: {_source_line(spec)}")
    print(f"license: {spec.license}" + (f" ({spec.license_source})" if spec.license_source else ""))
    if state["built"]:
        print(f"fidelity: {fidelity.summary(state['fidelity'])}")
    return 0


def _source_line(spec: ModelConfig) -> str:
    src = spec.source
    if src.parts:
        first, last = src.parts[0].package, src.parts[-1].package
        return (f"{len(src.parts)} PyPI wheels, {first} ... {last}, each pinned by sha256; joined "
                f"{src.bytes:,} bytes, sha256 {src.sha256}")
    if src.packages:
        return f"PyPI {', '.join(src.packages)}; sha256 {src.sha256}"
    return f"{src.kind} {src.path}" if src.path else src.kind


def cmd_remove(args) -> int:
    spec = registry.get(args.alias)
    done = pack.remove(spec)
    user_file = paths.user_conf_dir() / "model" / f"{spec.alias}.yaml"
    if user_file.exists():
        user_file.unlink()
        done.append(f"removed {user_file}")
    print("; ".join(done) if done else f"{args.alias}: nothing to remove (not built)")
    return 0


def cmd_cache(args) -> int:
    rows, total = [], 0
    for spec in registry.all_models().values():
        if spec.source.kind == "remote":
            continue
        folder = pack.model_folder(spec)
        size = pack.folder_bytes(folder)
        owned = spec.source.kind != "onnx"
        total += size if owned else 0
        rows.append([spec.alias, f"{size / 1e6:.1f}", str(folder) + ("" if owned else " (imported, not owned)")])
    extra = {name: pack.folder_bytes(paths.home() / name) for name in ("weights", "hf")}
    for name, size in extra.items():
        rows.append([f"({name})", f"{size / 1e6:.1f}", str(paths.home() / name)])
        total += size
    print(f"cache: {paths.home()}")
    print(tabulate(rows, headers=["model", "MB", "folder"]))
    print(f"total: {total / 1e6:.1f} MB")
    return 0
