"""Per-model cold figures for the model pack on Foundry Local, in process (FoundryBackend).

Each model is measured in a FRESH child process (`python benchmarks/models.py --one ALIAS`,
which prints one JSON line), so its load time and RSS are cold: no heap, runtime or
allocator state inherited from a model measured before it.

Measured per model (units):
- load_s          s         wall time of FoundryBackend.load() (the SDK's model.load(); the
                            Foundry Local manager is initialised before the clock starts)
- rss_before_mb   MB        process RSS just before the load (Python + SDK, no model)
- rss_load_mb     MB        process RSS right after the load; MB = 10^6 bytes
- ttft_s          s         median over the measured requests of t(first text) - t(sent)
- decode_tps      tokens/s  median of (completion_tokens - 1) / (e2e_s - ttft_s)
- tokens          tokens    median completion_tokens (decode speed depends on it)
- rss_peak_mb     MB        highest RSS sampled every 50 ms during the measured requests
- disk_mb         MB        bytes of the model folder / 10^6

Requests: 1 warm-up pass + 5 measured requests cycling over the smoke prompt set,
max_tokens 64, temperature 0, seed 42 (sequential, concurrency 1).

Run: SLMBENCH_HOME=... .venv/bin/python benchmarks/models.py [ALIAS ...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SMOKE = PROJECT_ROOT / "conf" / "prompts" / "data" / "smoke.yaml"
MEASURED = 5
MAX_TOKENS = 64
SEED = 42
CHILD_TIMEOUT_S = 300

COLUMNS = [  # (result key, header with unit, number format)
    ("alias", "model", ""),
    ("load_s", "load (s)", ".2f"),
    ("rss_before_mb", "RSS before load (MB)", ".0f"),
    ("rss_load_mb", "RSS after load (MB)", ".0f"),
    ("ttft_s", "TTFT median (s)", ".3f"),
    ("decode_tps", "decode median (tok/s)", ".1f"),
    ("tokens", "tokens median", ".0f"),
    ("rss_peak_mb", "peak RSS (MB)", ".0f"),
    ("disk_mb", "disk (MB)", ".0f"),
    ("error", "error", ""),
]

FORMULAS = ("TTFT = t(first non-empty text) - t(sent); decode = (completion_tokens - 1) / (e2e - TTFT), "
            "e2e = t(end) - t(sent); medians over {n} measured requests after 1 warm-up pass of the smoke "
            "prompts, max_tokens {mt}, temperature 0; MB = 10^6 bytes; one fresh process per model.")


def median_of(records: list[dict], key: str) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None]
    return statistics.median(values) if values else None


def measure_one(alias: str) -> dict:
    """Load `alias` cold in this process and time a few requests (run in a fresh child)."""
    from runner.backends import GenParams
    from runner.backends.foundry import FoundryBackend, ensure_registered
    from runner.config import prompts
    from runner.measure.memory import PeakSampler, rss_mb
    from runner.metrics.request import request_metrics
    from runner.models import pack, registry

    spec = registry.get(alias)
    ensure_registered(spec)  # as `slmbench run` does: a lost registration is restored
    prompt_set = prompts.load(SMOKE)
    params = GenParams(max_tokens=MAX_TOKENS, temperature=0.0, seed=SEED)
    backend = FoundryBackend(spec.id)
    result = {"alias": alias, "disk_mb": pack.folder_bytes(pack.model_folder(spec)) / 1e6}
    result["rss_before_mb"] = rss_mb()
    result["load_s"] = backend.load()
    result["rss_load_mb"] = rss_mb()
    try:
        for prompt in prompt_set.prompts:
            backend.chat(prompt.chat_messages(), params)
        todo = itertools.islice(itertools.cycle(prompt_set.prompts), MEASURED)
        with PeakSampler() as sampler:
            records = [request_metrics(backend.chat(p.chat_messages(), params)) for p in todo]
        result["rss_peak_mb"] = sampler.peak_mb
    finally:
        backend.unload()
    result.update(ttft_s=median_of(records, "ttft_s"), decode_tps=median_of(records, "decode_tps"),
                  tokens=median_of(records, "completion_tokens"))
    return result


def run_child(alias: str) -> dict:
    """Measure one model in a fresh interpreter; its last stdout line is the JSON result."""
    try:
        done = subprocess.run([sys.executable, __file__, "--one", alias], capture_output=True,
                              text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"alias": alias, "error": f"timed out after {CHILD_TIMEOUT_S} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        err = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"alias": alias, "error": err}
    return json.loads(lines[-1])


def table(results: list[dict]) -> str:
    from tabulate import tabulate

    shown = [c for c in COLUMNS if c[0] != "error" or any(r.get("error") for r in results)]
    rows = [[r.get(key) for key, _, _ in shown] for r in results]
    return tabulate(rows, headers=[h for _, h, _ in shown], tablefmt="github",
                    floatfmt=[f or "g" for _, _, f in shown], missingval="n/a")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("aliases", nargs="*", help="model aliases (default: every pack model)")
    parser.add_argument("--one", metavar="ALIAS", help="internal: measure ALIAS in this process, print JSON")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one)), flush=True)
        return
    from runner.models import pack

    results = [run_child(alias) for alias in args.aliases or pack.PACK]
    print(table(results))
    print()
    print(FORMULAS.format(n=MEASURED, mt=MAX_TOKENS))
    if failed := [r["alias"] for r in results if r.get("error")]:
        sys.exit(f"not measured: {', '.join(failed)} (the error column says why)")


if __name__ == "__main__":
    main()
