"""Is a model's bad answer the model's or the conversion's? Gemma 3 270M's verdict, reproduced.

For one pack alias (default gemma3-270m-int4) three models are compared with the float32
Hugging Face reference the pack builds from (the dequantized GGUF, `pack._source_folder`):
(a) that reference itself in transformers (torch), (b) an fp32 ONNX Runtime GenAI build of it:
the pack's own fp32 model when the pack holds one built from the same weights with the same
options (SmolLM2: smollm2-135m-fp32), else made here into `$SLMBENCH_HOME/scratch/<alias>-fp32`
by the pack's own builder child (`python -m runner.models.convert build`, the spec's context
length, builder options and stop tokens; reused while its stamp matches), (c) the pack's built
folder (int4 for Gemma). Fidelity figures the pack recorded for the same build against the same
reference (the same child) are read, not measured again.

1. Fidelity of (b) and (c): the `runner.models.fidelity` child on its fixed texts (5 texts + 1
   chat prompt). Over the N positions, with next-token logits r_i (reference) and o_i (build):
   top-1 = (1/N) sum_i [argmax r_i == argmax o_i]; max |diff| = max_i,v |r_i[v] - o_i[v]|;
   mean |diff| = (1/(N*V)) sum_i,v |r_i[v] - o_i[v]|; KL = (1/N) sum_i KL(softmax r_i || softmax o_i)
   (nats); tokenizer match = share of texts the build's tokenizer encodes to the reference's ids.
2. Greedy answers to the ten `meeting-notes` prompts: the prompt's messages rendered by the
   reference tokenizer's chat template, the same ids fed to (a), (b), (c); greedy, at most 64 new
   tokens, stopping at the build's eos ids (genai_config, <end_of_turn> included). Per prompt:
   whether (b)'s tokens equal (a)'s; the first token index k where (c) leaves (a) (k tokens
   agree; "-" = never); and what (a)'s answer is: "repeats the system prompt" when at least
   half of its word trigrams occur in the system prompt, else "loops" when a non-empty line
   occurs twice, else "other". Also: whether each build's own tokenizer (its chat template,
   then encode) gives the same prompt ids, and how many BOS tokens they hold.

Run (from the project root, pack built): SLMBENCH_HOME=~/.cache/slmbench .venv/bin/python
benchmarks/conversion.py [ALIAS] [--prompts N] [--new-tokens N] (fewer prompts or tokens: a cheaper
run whose figures are not the ones above). Cost for Gemma on 2 cores (shared with a test run): ~7 min
wall, 400 s CPU: the fp32 build ~15 s the first time (1.1 GB on disk, kept), the two fidelity
children ~1 min, the 30 generations ~5.5 min (transformers the slowest); ~4.5 GB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from runner.config import paths, prompts
from runner.models import fidelity, pack, registry

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MEETING_NOTES = PROJECT_ROOT / "conf" / "prompts" / "data" / "meeting-notes.yaml"
NEW_TOKENS = 64
SYSTEM_OVERLAP = 0.5  # share of the answer's word trigrams found in the system prompt


def pack_fp32_twin(spec):
    """The pack's own fp32 model built from the same weights with the same options (context
    length, builder options, stop tokens, chat template), when built: its folder is the build
    `build_fp32_copy` would make (the same builder child, the same arguments). None otherwise."""
    want = {**pack._stamp_for(spec), "precision": "fp32"}
    for other in registry.all_models().values():
        if (other.precision == "fp32" and {**pack._stamp_for(other), "alias": spec.alias} == want
                and pack.is_built(other)):
            return other
    return None


def recorded_fidelity(spec, reference: Path) -> dict | None:
    """The figures the pack measured for this exact build against this reference (the same
    `runner.models.fidelity` child), else None."""
    record = fidelity.read(pack.fidelity_folder(spec), pack._stamp_for(spec))
    return record if record and record.get("checked") and record.get("reference") == str(reference) else None


def build_fp32_copy(spec, reference: Path) -> Path:
    """The fp32 ONNX build of `reference` in the scratch folder, built with the pack's options."""
    folder = paths.home() / "scratch" / f"{spec.alias}-fp32"
    stamp = {**pack._stamp_for(spec), "precision": "fp32", "reference": str(reference)}
    if (folder / "genai_config.json").is_file() and pack._stamped(folder, stamp):
        return folder
    args = ["build", str(reference), str(folder), "--precision", "fp32",
            "--cache", str(paths.home() / "builder-cache"),
            "--context-length", str(spec.context_length or 2048)]
    args += [f"--extra-option={o}" for o in spec.source.builder_options]
    args += [f"--stop-token-id={t}" for t in spec.source.stop_token_ids]
    pack._child("runner.models.convert", args, folder.with_name(folder.name + ".build.log"), "fp32 build")
    (folder / pack.STAMP).write_text(json.dumps(stamp))
    return folder


def measure_fidelity(reference: Path, onnx_dir: Path) -> dict:
    out = onnx_dir.with_name(onnx_dir.name + ".fidelity.json")
    pack._child("runner.models.fidelity", [str(reference), str(onnx_dir), str(out)],
                out.with_suffix(".log"), f"fidelity of {onnx_dir}")
    return json.loads(out.read_text())


def fidelity_line(name: str, f: dict) -> str:
    if not f.get("checked"):
        return f"  {name}: not checked: {f.get('reason')}"
    return (f"  {name}: top-1 {f['top1_agreement']:.3f}, max |logit diff| {f['max_abs_logit_diff']:.4f}, "
            f"mean |logit diff| {f['mean_abs_logit_diff']:.4f}, KL {f['mean_kl']:.5f} nats, "
            f"tokenizer match {f['tokenizer_match']:.2f} ({f['positions']} positions, "
            f"reference logit std {f['ref_logit_std']})")


def prompt_token_ids(tok, chats: list[list[dict]]) -> list[list[int]]:
    """The ids every model reads: each chat rendered by the reference tokenizer's template
    (which writes the BOS itself, so no special tokens are added on encoding)."""
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def stop_ids_of(onnx_dir: Path) -> list[int]:
    eos = json.loads((onnx_dir / "genai_config.json").read_text())["model"]["eos_token_id"]
    return eos if isinstance(eos, list) else [eos]


def until_stop(ids: list[int], stops: list[int]) -> list[int]:
    """The answer without its stop token (transformers and ORT GenAI both may keep it)."""
    cut = [i for i, t in enumerate(ids) if t in stops]
    return ids[:cut[0]] if cut else ids


def greedy_reference(reference: Path, prompt_ids: list[list[int]], stops: list[int],
                     new_tokens: int = NEW_TOKENS) -> list[list[int]]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(reference, dtype=torch.float32).eval()
    answers = []
    for ids in prompt_ids:
        with torch.no_grad():
            seq = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=new_tokens, do_sample=False, eos_token_id=stops,
                                 pad_token_id=0)
        answers.append(until_stop(seq[0, len(ids):].tolist(), stops))
    return answers


def greedy_onnx(onnx_dir: Path, prompt_ids: list[list[int]], chats: list[list[dict]],
                stops: list[int], new_tokens: int = NEW_TOKENS) -> tuple[list[list[int]], int]:
    """Greedy answers of a built folder, and on how many prompts its own tokenizer (chat template,
    then encode) gives the ids the reference's gives."""
    import numpy as np
    import onnxruntime_genai as og

    model = og.Model(str(onnx_dir))
    tok = og.Tokenizer(model)
    answers, same_ids = [], 0
    for ids, chat in zip(prompt_ids, chats, strict=True):
        own = tok.encode(tok.apply_chat_template(json.dumps(chat), add_generation_prompt=True))
        same_ids += [int(i) for i in own] == ids
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + new_tokens, do_sample=False)
        gen = og.Generator(model, params)
        gen.append_tokens(np.array(ids, dtype=np.int32))
        while not gen.is_done():
            gen.generate_next_token()
        answers.append(until_stop([int(t) for t in gen.get_sequence(0)[len(ids):]], stops))
        del gen
    return answers, same_ids


def first_divergence(a: list[int], b: list[int]) -> int | None:
    """Index of the first token where `b` leaves `a` (= tokens agreed), None when equal."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def trigrams(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


def system_overlap(answer: str, system: str) -> float:
    mine = trigrams(answer)
    return len(mine & trigrams(system)) / len(mine) if mine else 0.0


def classify(answer: str, system: str) -> str:
    if system_overlap(answer, system) >= SYSTEM_OVERLAP:
        return "repeats the system prompt"
    lines = [ln.strip() for ln in answer.splitlines() if ln.strip()]
    return "loops" if len(lines) != len(set(lines)) else "other"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("alias", nargs="?", default="gemma3-270m-int4")
    p.add_argument("--prompts", type=int, default=None, metavar="N",
                   help="greedy answers to the first N meeting-notes prompts only (default: all ten)")
    p.add_argument("--new-tokens", type=int, default=NEW_TOKENS, metavar="N",
                   help="at most N new tokens per greedy answer (default: %(default)s)")
    a = p.parse_args()
    if (a.prompts is not None and a.prompts < 1) or a.new_tokens < 1:
        p.error("--prompts and --new-tokens must be >= 1")
    t0 = time.perf_counter()
    spec = registry.get(a.alias)
    built = pack.model_folder(spec)
    if not pack.is_built(spec):
        raise SystemExit(f"{a.alias} is not built: run `slmbench models pack {a.alias}` first")
    reference = pack._source_folder(spec, lambda _: None)
    twin = pack_fp32_twin(spec)
    fp32 = pack.model_folder(twin) if twin else build_fp32_copy(spec, reference)
    t_build = time.perf_counter()
    fid = {f"fp32 ONNX ({fp32})": (twin and recorded_fidelity(twin, reference)) or measure_fidelity(reference, fp32),
           f"{spec.precision} pack": recorded_fidelity(spec, reference) or measure_fidelity(reference, built)}
    t_fid = time.perf_counter()
    print(f"1) fidelity against the float32 reference {reference} ({len(fidelity.TEXTS)} texts + 1 chat prompt)")
    for name, f in fid.items():
        print(fidelity_line(name, f))

    from transformers import AutoTokenizer

    items = prompts.load(MEETING_NOTES).prompts[:a.prompts]
    chats = [pr.chat_messages() for pr in items]
    systems = ["\n".join(c for r, c in pr.messages if r == "system") for pr in items]
    tok = AutoTokenizer.from_pretrained(reference)
    ids = prompt_token_ids(tok, chats)
    stops = stop_ids_of(built)
    ref = greedy_reference(reference, ids, stops, a.new_tokens)
    same32, ids32 = greedy_onnx(fp32, ids, chats, stops, a.new_tokens)
    quant, ids_q = greedy_onnx(built, ids, chats, stops, a.new_tokens)
    t_gen = time.perf_counter()

    print(f"\n2) greedy, <= {a.new_tokens} new tokens, stop ids {stops}, {len(items)} meeting-notes prompts; "
          f"(a) float32 HF in transformers, (b) fp32 ONNX, (c) {spec.precision} pack build")
    print("| prompt | (b) == (a) | (c) leaves (a) at token | (a) tokens | (a) system overlap | (a) is | (a) starts |")
    print("|---|---|---|---|---|---|---|")
    kinds, leaves = [], []
    for pr, system, r, b, c in zip(items, systems, ref, same32, quant, strict=True):
        text = tok.decode(r, skip_special_tokens=True)
        kinds.append(classify(text, system))
        leaves.append(first_divergence(r, c))
        start = " ".join(text.split())[:60].replace("|", "/")
        print(f"| {pr.id} | {'yes' if b == r else 'NO'} | {'-' if leaves[-1] is None else leaves[-1]} | "
              f"{len(r)} | {system_overlap(text, system):.2f} | {kinds[-1]} | {start} |")
    split = [k for k in leaves if k is not None]
    print(f"counts: (b) equals (a) token for token on {sum(b == r for b, r in zip(same32, ref, strict=True))}"
          f"/{len(items)}; (c) leaves (a) on {len(split)}/{len(items)}"
          + (f", after {min(split)}-{max(split)} tokens" if split else "")
          + "; (a): " + ", ".join(f"{kinds.count(k)} {k}" for k in ("repeats the system prompt", "loops", "other")))
    print(f"prompt ids: the build's own chat template + tokenizer give the reference's ids on {ids32}/{len(items)} "
          f"(fp32), {ids_q}/{len(items)} ({spec.precision}); BOS count per prompt {sorted({i.count(tok.bos_token_id) for i in ids})}")
    print(f"\nwall: float32 reference check + fp32 build {t_build - t0:.0f} s, fidelity {t_fid - t_build:.0f} s, "
          f"generation {t_gen - t_fid:.0f} s, total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
