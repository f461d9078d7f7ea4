"""What reusing a judge prompt's shared prefix saves: the grades of one transcript's answers all begin
with the same system prompt, transcript and reference, and only the answer and what follows differ.

    python benchmarks/judge_prefix.py [JUDGE_ALIAS] [--transcripts N] [--answers N]   (default: qwen2.5-coder-1.5b-int4, all)

For each calibration transcript (conf/calibration/meeting-notes.yaml), each of its answers' rubric
prompts (judges/rubric.messages, the chat template applied) is read by the model in ONNX Runtime
GenAI directly, two ways, and the time to the first generated token is taken:
  a) anew: a fresh generator reads the whole prompt (what a grade costs today);
  b) reused: one generator reads the longest prefix the transcript's prompts share once, then for
     each answer rewinds to it (`Generator.rewind_to`) and reads only the rest.
Both ways end with the same first token (checked: the reuse must not change what the judge says).
Printed: prompt and prefix tokens, seconds per grade to the first token both ways, and the ratio.
Decoding the reply costs the same both ways and is left out. One run, one machine.
"""

from __future__ import annotations

import argparse
import json
import time


def first_token_anew(og, model, ids: list[int]) -> tuple[int, float]:
    t0 = time.perf_counter()
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 1, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)
    gen.generate_next_token()
    return int(gen.get_next_tokens()[0]), time.perf_counter() - t0


def shared_prefix(seqs: list[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != seqs[0][i] for s in seqs[1:]):
            return i
    return n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("judge", nargs="?", default="qwen2.5-coder-1.5b-int4")
    ap.add_argument("--transcripts", type=int, default=None, help="the first N transcripts only")
    ap.add_argument("--answers", type=int, default=None, help="the first N answers of each transcript only")
    args = ap.parse_args(argv)
    import onnxruntime_genai as og

    from judges import qualify, rubric
    from runner.models import pack, registry

    spec = registry.get(args.judge)
    if not pack.is_built(spec):
        raise SystemExit(f"{args.judge} is not built: slmbench models pack {args.judge}")
    model = og.Model(str(pack.model_folder(spec)))
    tok = og.Tokenizer(model)
    transcripts = qualify.load_calibration().transcripts[:args.transcripts]
    rows, anew_s, reused_s, grades = [], 0.0, 0.0, 0
    for t in transcripts:
        seqs = [list(tok.encode(tok.apply_chat_template(json.dumps(rubric.messages(t.prompt, a.text)),
                                                         add_generation_prompt=True))) for a in t.answers[:args.answers]]
        cut = shared_prefix(seqs)
        a_times, firsts = [], []
        for ids in seqs:
            first, s = first_token_anew(og, model, ids)
            firsts.append(first)
            a_times.append(s)
        t0 = time.perf_counter()
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=max(len(s) for s in seqs) + 1, do_sample=False)
        gen = og.Generator(model, params)
        gen.append_tokens(seqs[0][:cut])
        prefix_s = time.perf_counter() - t0
        b_times = []
        for ids, first in zip(seqs, firsts, strict=True):
            t1 = time.perf_counter()
            gen.rewind_to(cut)
            gen.append_tokens(ids[cut:])
            gen.generate_next_token()
            b_times.append(time.perf_counter() - t1)
            if int(gen.get_next_tokens()[0]) != first:
                raise SystemExit(f"{t.prompt.id}: the reused prefix changed the first token: not a valid saving")
        n = len(seqs)
        anew_s += sum(a_times)
        reused_s += prefix_s + sum(b_times)
        grades += n
        rows.append((t.prompt.id, n, sum(map(len, seqs)) / n, cut, sum(a_times) / n, (prefix_s + sum(b_times)) / n))
    print(f"judge {args.judge}; time to the first token of a grade's reply (s), rubric prompts, "
          f"{len(rows)} calibration transcripts")
    print(f"{'transcript':<24}{'grades':>7}{'tokens':>8}{'prefix':>8}{'a) anew':>10}{'b) reused':>11}{'ratio':>7}")
    for pid, n, mean_len, cut, a, b in rows:
        print(f"{pid:<24}{n:>7}{mean_len:>8.0f}{cut:>8}{a:>10.2f}{b:>11.2f}{a / b:>6.1f}x")
    print(f"all: {grades} grades, a) {anew_s / grades:.2f} s a grade anew, b) {reused_s / grades:.2f} s a grade "
          f"reusing each transcript's prefix (its first read included): {anew_s / reused_s:.1f}x less prefill")


if __name__ == "__main__":
    main()
