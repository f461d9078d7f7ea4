"""What the runner itself costs and how close its timings are to the truth.

Three measurements, one run, printed as figures and ratios:

a) Runner vs bare SDK, same model (default smollm2-135m-int4), same requests (smoke prompt set,
   max_tokens 64, temperature 0, seed 42), N requests per path (default 20) after one warm-up
   pass per path, interleaved in alternating blocks (bare|runner, runner|bare, ...) so drift
   cancels. Per request, wall clock (perf_counter), ms:
   - bare SDK: ChatSession per request, set_options(SearchOptions(temperature=0,
     max_output_tokens=64, seed=42)), set_streaming(True), process_streaming_request,
     iterate the TextItems, read usage;
   - runner: the closed loop itself (`runner.measure.closed_loop.measure`, concurrency 1) for one
     request, with the config `slmbench run model=ALIAS` composes: FoundryBackend.chat +
     request_metrics + RecordWriter.append to a temporary requests.jsonl. The loop stop
     (decoding.loop_stop) is off: it would end looping answers before the cap the bare loop runs to.
   Reported: median ms per prompt and path (the two prompts' outputs differ in length, so one
   median over the mix is meaningless), ratio runner/bare of one pass = sum of the per-prompt
   medians (goal <= 1.02), and the median paired ratio and difference (same prompt, adjacent
   blocks), ms.
b) Timing accuracy against tests/scripted_server.py (true TTFT 0.1 s, TPOT 0.01 s, 30 tokens,
   so true e2e = 0.1 + 29 x 0.01 = 0.39 s), 20 requests (`--scripted`) via OpenAIBackend: median measured
   ttft_s / tpot_s / e2e_s and median (measured - true), ms. True offsets count from the
   request's arrival at the server; the client clock starts before sending, so the send time
   (arrival - t_sent, also shown) is part of the error. e2e_s ends at the stream's last byte
   (after the usage chunk and [DONE]), so the time of the last content chunk is shown too.
c) Pure bookkeeping per request (no model): request_metrics on a synthetic 64-token Completion,
   the record built as the closed loop builds it, RecordWriter.append (json + write + flush), and the
   per-request timeout timer FoundryBackend starts; microseconds per request, 10,000 iterations
   (`--iterations`).

Run: SLMBENCH_HOME=... .venv/bin/python benchmarks/overhead.py [--model ALIAS] [-n N]
Smallest run (a check that the script works, not a figure): -n 2 --scripted 2 --iterations 10

"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SMOKE = PROJECT_ROOT / "conf" / "prompts" / "data" / "smoke.yaml"
MAX_TOKENS = 64
SEED = 42
GOAL_RATIO = 1.02
SCRIPT = {"ttft_s": 0.1, "tpot_s": 0.01, "tokens": 30}
SCRIPTED_REQUESTS = 20
BOOKKEEPING_ITERATIONS = 10_000


def med_ms(values: list[float]) -> float:
    return statistics.median(values) * 1e3


# --- a) runner vs bare SDK ---------------------------------------------------------------

def bare_request(model, prompt) -> tuple[float, str, int]:
    """One request straight through foundry_local_sdk: (wall s, text, completion tokens)."""
    from foundry_local_sdk import ChatSession, MessageItem, Request, RequestOptions, SearchOptions, TextItem

    build = {"system": MessageItem.system, "user": MessageItem.user, "assistant": MessageItem.assistant}
    t0 = time.perf_counter()
    with ChatSession(model) as session:
        session.set_options(RequestOptions(search=SearchOptions(
            temperature=0, max_output_tokens=MAX_TOKENS, seed=SEED)))
        session.set_streaming(True)
        request = Request()
        for role, content in prompt.messages:
            request.add_item(build[role](content))
        with session.process_streaming_request(request) as stream:
            text = "".join(item.text for item in stream if isinstance(item, TextItem) and item.text)
            with stream.final_response as final:
                tokens = final.get_usage().completion_tokens
    return time.perf_counter() - t0, text, tokens


def runner_request(prompt, ctx: SimpleNamespace) -> float:
    """One request through the runner's own measured loop (`closed_loop.measure`, concurrency 1): wall s."""
    from runner.measure.closed_loop import measure

    t0 = time.perf_counter()
    measure(ctx.sender, [(ctx.round, prompt)], 1, ctx.t0)
    wall = time.perf_counter() - t0
    ctx.round += 1
    return wall


def job_config(alias: str):
    """The job's plan, from the config `slmbench run model=ALIAS` composes (Hydra, the typed schema, the
    user's conf dir), with this script's decoding and one request in flight: what the closed loop
    reads, whatever it reads."""
    from hydra import compose, initialize_config_dir

    from runner.config import paths, plan, schema
    from runner.config.resolvers import register_resolvers

    schema.register()
    register_resolvers()
    overrides = [f"model={alias}", f"decoding.max_tokens={MAX_TOKENS}", "decoding.temperature=0",
                 f"decoding.seed={SEED}", "run.concurrency=1", "run.progress=false",
                 f"hydra.searchpath=[file://{paths.user_conf_dir()}]"]
    # The bare loop runs every answer to the cap; a loop stop would end some of the runner's
    # answers early, and the two paths would do different work.
    if "loop_stop" in {f.name for f in dataclasses.fields(schema.DecodingConfig)}:
        overrides.append("decoding.loop_stop=false")
    with initialize_config_dir(str(paths.CONF_DIR), version_base="1.3"):
        return plan.build(compose("config", overrides))


def runner_context(job, backend, writer) -> SimpleNamespace:
    """What `closed_loop.measure` takes besides the requests: a sender (runner/measure/sender.py) with
    the decoding params (every `GenParams` field from the plan's `decoding`), the writer and a silent
    progress, as the job builds it."""
    from runner.backends import GenParams
    from runner.measure.job import Progress
    from runner.measure.sender import Sender

    decoding = job.decoding.as_dict()
    params = GenParams(**{f.name: decoding[f.name] for f in dataclasses.fields(GenParams) if f.name in decoding})
    sender = Sender(backend, params, job.label, job.model.id, job.decoding.loop_stop, writer,
                    Progress(job.label, 0, False))
    return SimpleNamespace(params=params, sender=sender, t0=time.perf_counter(), round=0)


def interleaved(model, backend, prompt_set, ctx, blocks: int) -> dict:
    """`blocks` rounds; each runs one pass over the prompts on each path, in alternating order.

    Returns per path the list of (prompt id, wall s), in the same order on both paths, so
    element i of one path is paired with element i of the other (same prompt, adjacent block);
    and the bare path's outputs, to check both paths generated the same tokens."""
    walls = {"bare": [], "runner": []}
    bare_out = {}
    for block in range(blocks):
        order = ("bare", "runner") if block % 2 == 0 else ("runner", "bare")
        for path in order:
            for prompt in prompt_set.prompts:
                if path == "bare":
                    wall, text, tokens = bare_request(model, prompt)
                    bare_out.setdefault(prompt.id, set()).add((text, tokens))
                else:
                    wall = runner_request(prompt, ctx)
                walls[path].append((prompt.id, wall))
    return {"walls": walls, "bare_out": bare_out}


def runner_outputs(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out.setdefault(r["prompt_id"], set()).add((r["output"], r["completion_tokens"]))
    return out


def runner_vs_bare(alias: str, n: int) -> dict:
    from runner.backends.foundry import FoundryBackend, ensure_registered
    from runner.config import prompts
    from runner.models import catalog, registry
    from runner.store.records import RecordWriter

    spec = registry.get(alias)
    ensure_registered(spec)
    prompt_set = prompts.load(SMOKE)
    backend = FoundryBackend(spec.id)
    backend.load()
    model = catalog.find(spec.id)  # the SDK's own handle to the same (now loaded) model
    try:
        with tempfile.TemporaryDirectory() as tmp:
            req_path = Path(tmp) / "requests.jsonl"
            writer = RecordWriter(req_path)
            ctx = runner_context(job_config(alias), backend, writer)
            interleaved(model, backend, prompt_set, ctx, 1)  # warm-up: one pass per path
            req_path.write_text("")  # drop the warm-up records
            got = interleaved(model, backend, prompt_set, ctx, -(-n // len(prompt_set.prompts)))
            writer.close()
            same = runner_outputs(req_path) == got["bare_out"]
    finally:
        backend.unload()
    return {"alias": alias, "walls": got["walls"], "same_outputs": same}


def by_prompt(walls: list[tuple[str, float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for pid, wall in walls:
        out.setdefault(pid, []).append(wall)
    return out


def report_a(res: dict) -> str:
    """Per-prompt medians (the prompts' output lengths differ, so a median over the mix would
    fall between two clusters), the ratio of one pass (sum of per-prompt medians), and the
    median of the paired ratios."""
    from tabulate import tabulate

    bare, runner = by_prompt(res["walls"]["bare"]), by_prompt(res["walls"]["runner"])
    rows = [[pid, len(bare[pid]), med_ms(bare[pid]), med_ms(runner[pid]),
             statistics.median(runner[pid]) / statistics.median(bare[pid])] for pid in bare]
    pass_bare = sum(statistics.median(v) for v in bare.values())
    pass_runner = sum(statistics.median(v) for v in runner.values())
    ratio = pass_runner / pass_bare
    rows.append(["one pass (sum of medians)", sum(len(v) for v in bare.values()), pass_bare * 1e3,
                 pass_runner * 1e3, ratio])
    pairs = list(zip(res["walls"]["runner"], res["walls"]["bare"], strict=True))
    paired_ratio = statistics.median(r[1] / b[1] for r, b in pairs)
    paired_ms = med_ms([r[1] - b[1] for r, b in pairs])
    table = tabulate(rows, headers=["prompt", "requests per path", "bare SDK median (ms)",
                                    "runner median (ms)", "ratio runner/bare"],
                     tablefmt="github", floatfmt=("", "", ".1f", ".1f", ".4f"))
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    return (f"a) runner vs bare SDK: {res['alias']}, smoke prompts, max_tokens {MAX_TOKENS}, temperature 0, "
            f"alternating blocks, wall ms per request\n{table}\n"
            f"ratio runner/bare = {ratio:.4f} (one pass)  -> goal <= {GOAL_RATIO}: {verdict}\n"
            f"paired (same prompt, adjacent blocks): median ratio {paired_ratio:.4f}, "
            f"median difference {paired_ms:+.2f} ms/request\n"
            f"identical outputs and token counts on both paths: {'yes' if res['same_outputs'] else 'NO'}")


# --- b) timing accuracy against the scripted server ---------------------------------------

def scripted_module():
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    try:
        return importlib.import_module("scripted_server")
    finally:
        sys.path.remove(str(PROJECT_ROOT / "tests"))


def scripted_accuracy(n: int) -> dict:
    from runner.backends import GenParams
    from runner.backends.openai_compat import OpenAIBackend
    from runner.metrics.request import request_metrics

    ss = scripted_module()
    script = ss.Script(**SCRIPT)
    params = GenParams(max_tokens=MAX_TOKENS, temperature=0.0, seed=SEED)
    messages = [{"role": "user", "content": "hello"}]
    with ss.ScriptedServer(script) as srv:
        backend = OpenAIBackend(script.model_ids[0], srv.base_url)
        backend.load()
        backend.chat(messages, params)  # warm-up: connection pool, imports
        srv.clear()
        done = [backend.chat(messages, params) for _ in range(n)]
        arrivals = list(srv.arrivals)
    offsets = script.token_offsets(MAX_TOKENS)
    truth = {"ttft_s": offsets[0], "tpot_s": script.tpot_s, "e2e_s": offsets[-1]}
    metrics = [request_metrics(c) for c in done]
    return {"n": n, "truth": truth, "metrics": metrics,
            "last_s": [c.deltas[-1][0] - c.t_sent for c in done],
            "send_s": [a - c.t_sent for a, c in zip(arrivals, done, strict=True)]}


def report_b(res: dict) -> str:
    from tabulate import tabulate

    rows = []
    for key, true in res["truth"].items():
        values = [m[key] for m in res["metrics"]]
        rows.append([key, true * 1e3, med_ms(values), med_ms([v - true for v in values])])
    last = res["truth"]["e2e_s"]
    rows.append(["last content chunk - t_sent", last * 1e3, med_ms(res["last_s"]),
                 med_ms([v - last for v in res["last_s"]])])
    rows.append(["send (arrival - t_sent)", 0.0, med_ms(res["send_s"]), med_ms(res["send_s"])])
    table = tabulate(rows, headers=["metric", "true (ms)", "measured median (ms)", "median error (ms)"],
                     tablefmt="github", floatfmt=".2f")
    return (f"b) timing accuracy, scripted server (ttft {SCRIPT['ttft_s']} s, tpot {SCRIPT['tpot_s']} s, "
            f"{SCRIPT['tokens']} tokens), {res['n']} requests via OpenAIBackend\n{table}")


# --- c) bookkeeping per request -------------------------------------------------------------

def synthetic_completion(tokens: int = MAX_TOKENS):
    from runner.backends import Completion

    deltas = [(0.1 + 0.01 * i, f"t{i} ") for i in range(tokens)]
    return Completion(t_sent=0.0, t_end=deltas[-1][0] + 0.001, deltas=deltas, prompt_tokens=20,
                      completion_tokens=tokens, finish_reason="length")


def per_call_us(fn, iterations: int) -> float:
    t0 = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - t0) / iterations * 1e6


def bookkeeping(iterations: int) -> list[tuple[str, float]]:
    from runner.metrics.request import request_metrics
    from runner.store.records import RecordWriter

    c = synthetic_completion()
    base = {"model": "synthetic", "model_id": "synthetic:1"}

    def record() -> dict:  # as closed_loop.measure builds it
        return {**base, "prompt_id": "p", "round": 0, "status": "ok", "error": None,
                **request_metrics(c, MAX_TOKENS), "output": c.text, "t_start_s": c.t_sent,
                "t_start_unix": c.t_sent}

    def timer() -> None:  # FoundryBackend.chat's per-request timeout
        t = threading.Timer(120.0, lambda: None)
        t.start()
        t.cancel()

    with tempfile.TemporaryDirectory() as tmp:
        writer = RecordWriter(Path(tmp) / "requests.jsonl")
        rec = record()
        out = [("request_metrics", per_call_us(lambda: request_metrics(c), iterations)),
               ("RecordWriter.append (json + write + flush)", per_call_us(lambda: writer.append(rec), iterations)),
               ("request_metrics + record + append", per_call_us(lambda: writer.append(record()), iterations)),
               ("timeout timer start + cancel (FoundryBackend)", per_call_us(timer, iterations))]
        writer.close()
    return out


def report_c(rows: list[tuple[str, float]], iterations: int) -> str:
    from tabulate import tabulate

    table = tabulate(rows, headers=["step", "cost (us/request)"], tablefmt="github", floatfmt=".1f")
    return f"c) bookkeeping per request, synthetic 64-token Completion, {iterations} iterations\n{table}"


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def main(argv: list[str] | None = None) -> None:
    from runner.models import pack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=pack.SMALL_PACK[0], help="alias for a) (default: %(default)s)")
    parser.add_argument("-n", type=positive, default=20, help="requests per path in a), rounded up to whole passes "
                        "over the prompts (default: %(default)s)")
    parser.add_argument("--scripted", type=positive, default=SCRIPTED_REQUESTS, metavar="N",
                        help="requests to the scripted server in b) (default: %(default)s)")
    parser.add_argument("--iterations", type=positive, default=BOOKKEEPING_ITERATIONS, metavar="N",
                        help="iterations per step in c) (default: %(default)s)")
    args = parser.parse_args(argv)
    print(report_a(runner_vs_bare(args.model, args.n)), end="\n\n", flush=True)
    print(report_b(scripted_accuracy(args.scripted)), end="\n\n", flush=True)
    print(report_c(bookkeeping(args.iterations), args.iterations))


if __name__ == "__main__":
    main()
