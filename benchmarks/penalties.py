"""Do repetition penalties help the pack's small models? A table of degenerate share and notes score
per model and repetition_penalty, on the first N meeting-notes prompts, greedy decoding.

Why ONNX Runtime GenAI directly: Foundry Local's SDK (2.2.1) refuses a nonzero frequency/presence
penalty and ignores `repetition_penalty` (runner/backends/foundry.py), so the runner cannot send
one in process; ORT GenAI, the runtime under it, runs the same pack folders and takes
`repetition_penalty` as a search option. What helps here is what an endpoint serving these models
(vLLM, llama.cpp: `decoding.repetition_penalty`) would see.

Per answer: the degenerate class (runner/metrics/degenerate.py, with off_task from the notes
scorer's recall) and the notes score (judges/notes.py). Each answer runs to the derived cap
(runner/measure/cap.py) with no loop stop, so a loop shows as a loop.

    .venv/bin/python benchmarks/penalties.py [--prompts 3] [--models a,b] [--penalties 1.0,1.1,1.2,1.3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tabulate import tabulate  # noqa: E402

from judges import notes  # noqa: E402
from runner.config import prompts  # noqa: E402
from runner.measure import cap  # noqa: E402
from runner.metrics import degenerate  # noqa: E402
from runner.models import pack, registry  # noqa: E402

PACK = ("smollm2-135m-int4", "smollm2-135m-int8", "gemma3-270m-int4")


def answer(og, model, tokenizer, messages: list[dict], max_tokens: int, penalty: float) -> str:
    text = tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
    ids = tokenizer.encode(text)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + max_tokens, do_sample=False, repetition_penalty=penalty)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)
    while not gen.is_done():
        gen.generate_next_token()
    return tokenizer.decode(gen.get_sequence(0)[len(ids):])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--models", default=",".join(PACK))
    ap.add_argument("--penalties", default="1.0,1.1,1.2,1.3")
    args = ap.parse_args(argv)
    import onnxruntime_genai as og

    ps = prompts.load(Path(__file__).resolve().parent.parent / "conf/prompts/data/meeting-notes.yaml",
                      limit=args.prompts).prompts
    penalties = [float(x) for x in args.penalties.split(",")]
    rows = []
    for alias in args.models.split(","):
        spec = registry.get(alias)
        folder = pack.model_folder(spec)
        if not pack.is_built(spec):
            print(f"{alias}: not built (slmbench models pack {alias}); skipped", file=sys.stderr)
            continue
        model = og.Model(str(folder))
        tokenizer = og.Tokenizer(model)
        counts = [len(tokenizer.encode(p.reference)) for p in ps]
        max_tokens = cap.derive([p.reference for p in ps], lambda texts, c=counts: c)["max_tokens"]
        for penalty in penalties:
            t0 = time.perf_counter()
            classes, scores = [], []
            for p in ps:
                try:
                    text = answer(og, model, tokenizer, p.chat_messages(), max_tokens, penalty)
                except Exception as exc:  # e.g. a base model without a chat template
                    print(f"{alias}: {type(exc).__name__}: {exc}; skipped", file=sys.stderr)
                    break
                graded = notes.score(p, text) or {}
                texts = [c for r, c in p.messages if r in ("system", "user")]
                classes.append(degenerate.with_grade(degenerate.classify(text, texts), graded))
                scores.append(graded.get("score"))
            if not classes:
                break
            bad = [c for c in classes if c]
            rows.append([alias, penalty, len(classes), f"{len(bad) / len(classes):.0%}",
                         ", ".join(f"{c} {bad.count(c)}" for c in degenerate.CLASSES if bad.count(c)) or "-",
                         f"{sum(scores) / len(scores):.2f}", f"{time.perf_counter() - t0:.0f}"])
        del model
    print(tabulate(rows, headers=["model", "repetition_penalty", "answers", "degenerate.share", "classes",
                                  "notes score (1-5)", "seconds"], tablefmt="github"))
    print(f"\nmeeting-notes, first {args.prompts} prompts, greedy, cap derived from the references, no loop stop; "
          "ONNX Runtime GenAI directly (Foundry Local in process takes no penalty).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
