"""Conversion fidelity: a built ONNX model's next-token logits against the weights it was built from.

For each fixed text in `TEXTS` (plus one chat-templated prompt when the reference has a
chat template) both models read the same token ids, and at every position i we compare
the next-token logits of the Hugging Face model the build was made from (torch; float32, or
bfloat16 when the weights were dequantized to bfloat16: `reference_dtype`), r_i, with the built ONNX
Runtime GenAI model's, o_i (vocabulary size V, N positions over all texts):

- top1_agreement = (1/N) * sum_i [argmax r_i == argmax o_i]                      (share, 0..1)
- max_abs_logit_diff = max_i max_v |r_i[v] - o_i[v]|                               (logits)
- mean_abs_logit_diff = (1/(N*V)) * sum_i sum_v |r_i[v] - o_i[v]|                  (logits)
- mean_kl = (1/N) * sum_i KL(softmax r_i || softmax o_i)                           (nats)
- ref_logit_std = (1/N) * sum_i std_v(r_i), the reference's own logit scale, to read the
  differences against                                                              (logits)
- tokenizer_match = share of texts the built folder's tokenizer encodes to the reference
  tokenizer's ids (the templated prompt rendered by each side's own chat template).

The measurement runs as a child process (`python -m runner.models.fidelity HF_DIR ONNX_DIR
OUT`), so torch never loads into the CLI; this module's top level imports neither torch nor
onnxruntime_genai. A reference that cannot be loaded gives {"checked": false, "reason": ...},
never a pass.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

FILE = ".slmbench-fidelity.json"

TEXTS = [
    "The capital of France is Paris. The capital of Germany is Berlin, and the capital of Italy is",
    "Action items: Aisha will check the staging database by Thursday. Tom hands Marco a test phone "
    "after standup. Open question: who writes the release notes?",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "Water boils at 100 degrees Celsius at sea level. At higher altitudes the air pressure is lower, so",
    "Running a language model on your own laptop keeps the data private, works offline and costs",
]
CHAT = [{"role": "system", "content": "You summarize meeting transcripts in three short sections."},
        {"role": "user", "content": "Priya: Code freeze is Friday. Marco: What about dark mode? "
                                    "Priya: It waits for 2.5. Summarize this meeting."}]

# A build is suspect below these top-1 agreements, or with any non-finite logit or any
# tokenizer mismatch. Measured (docs/models.md; `slmbench models info ALIAS`): fp32 builds agree
# 1.000 (max diff <= 0.008), so fp32 must match to float rounding; int8 gave 0.956; int4
# re-quantization honestly costs a lot on these tiny models (0.60 SmolLM2, 0.65 Gemma). So int4
# catches gross breakage only (tests/test_fidelity.py: a build with its rotary tables wiped is
# SUSPECT), not a subtle bug hidden under quantization noise.
MIN_TOP1 = {"fp32": 0.98, "int8": 0.85, "int4": 0.5}
DEFAULT_MIN_TOP1 = 0.5  # unknown precision (e.g. an imported folder): the loosest


def threshold(precision: str) -> float:
    return MIN_TOP1.get(precision, DEFAULT_MIN_TOP1)


def assess(record: dict | None, precision: str) -> dict | None:
    """The stored figures plus the verdict under today's thresholds (None when never measured)."""
    if record is None:
        return None
    out = {k: v for k, v in record.items() if k != "stamp"}
    if not record.get("checked"):
        out["suspect"] = None
        return out
    out["min_top1"] = threshold(precision)
    out["suspect"] = bool(record["top1_agreement"] < out["min_top1"] or record["tokenizer_match"] < 1.0
                          or record.get("nonfinite_positions", 0) > 0)
    return out


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def summary(assessed: dict | None) -> str:
    """One line for people: `models info`, `models pack`, `models import`."""
    if assessed is None:
        return "not measured yet (`slmbench models pack ALIAS` measures it)"
    if not assessed.get("checked"):
        return f"not checked: {assessed.get('reason')}"
    extra = ""
    if assessed["tokenizer_match"] < 1.0:
        extra += f"; tokenizer matches on {assessed['tokenizer_match']:.0%} of texts"
    if assessed.get("nonfinite_positions"):
        extra += f"; {assessed['nonfinite_positions']} positions with non-finite logits"
    return (f"{'SUSPECT' if assessed['suspect'] else 'ok'}: top-1 agreement {assessed['top1_agreement']:.3f} "
            f"(suspect below {assessed['min_top1']}), max |logit diff| {_num(assessed['max_abs_logit_diff'])}, "
            f"mean {_num(assessed['mean_abs_logit_diff'])}, KL {_num(assessed['mean_kl'])} nats, "
            f"{assessed['positions']} positions{extra}")


def read(folder: Path, stamp: dict) -> dict | None:
    """The record stored for exactly this build (`stamp`), else None."""
    try:
        record = json.loads((folder / FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("stamp") == stamp else None


def write(folder: Path, stamp: dict, record: dict) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    record = {**record, "stamp": stamp}
    (folder / FILE).write_text(json.dumps(record, indent=2))
    return record


def not_checked(reason: str) -> dict:
    return {"checked": False, "reason": reason}




def _load_reference(hf_dir: Path):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    # A folder dequantized to bfloat16 (a big model's, to fit the memory budget) is its own reference,
    # run in bfloat16: casting it to float32 peaked at 10.9 GB for a 1.5B model, 7.6 GB held after.
    stored = AutoConfig.from_pretrained(hf_dir).dtype
    model = AutoModelForCausalLM.from_pretrained(
        hf_dir, dtype=torch.bfloat16 if stored == torch.bfloat16 else torch.float32)
    model.eval()
    return tok, model


def _chat_text(tok) -> str | None:
    if not getattr(tok, "chat_template", None):
        return None
    return tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)


def _reference_ids(tok) -> list[list[int]]:
    """The reference's token ids per text: what both models read (plus the chat prompt, whole, BOS
    included, as the reference's template renders it, when it has one)."""
    ids = [tok(t)["input_ids"] for t in TEXTS]
    if (chat := _chat_text(tok)) is not None:
        ids.append(tok(chat, add_special_tokens=False)["input_ids"])
    return ids


def _tokenizer_matches(tok, otok) -> int:
    """How many texts the ONNX folder's tokenizer encodes to the reference's ids. Plain texts are
    compared without special tokens (ORT GenAI's encode adds none); the chat prompt as each side's
    own template renders it, since that is what the runtime feeds the model."""
    same = sum(tok(t, add_special_tokens=False)["input_ids"] == [int(i) for i in otok.encode(t)] for t in TEXTS)
    if (chat := _chat_text(tok)) is not None:
        try:
            onnx_text = otok.apply_chat_template(json.dumps(CHAT), add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - a folder without a template renders nothing
            onnx_text = ""
        same += tok(chat, add_special_tokens=False)["input_ids"] == [int(i) for i in otok.encode(onnx_text)]
    return same


def measure(hf_dir: Path, onnx_dir: Path) -> dict:
    """Compare the two models on `TEXTS` (+ the chat prompt); the formulas are in the module docstring.

    Positions where the ONNX logits are not finite count as disagreements and are left out of
    the difference figures (`nonfinite_positions` counts them)."""
    import numpy as np
    import onnxruntime_genai as og
    import torch

    try:
        tok, ref = _load_reference(hf_dir)
    except Exception as exc:  # noqa: BLE001 - any failure to load means "not checked"
        first = (str(exc).strip().splitlines() or [""])[0]
        return not_checked(f"reference {hf_dir} could not be loaded: {type(exc).__name__}: {first}")
    texts = _reference_ids(tok)
    ref_dtype = str(next(ref.parameters()).dtype).removeprefix("torch.")
    # The reference's logits first, then the reference goes: a 1.5B model's reference (3.6 GB) and
    # its ONNX build are never in memory together.
    with torch.no_grad():
        reference = [ref(torch.tensor([ids])).logits[0].float().numpy() for ids in texts]
    del ref
    gc.collect()
    model = og.Model(str(onnx_dir))
    same = _tokenizer_matches(tok, og.Tokenizer(model))
    n = agree = finite_n = nonfinite = 0
    max_diff = sum_abs = sum_kl = sum_std = 0.0
    vocab = None
    for ids, r in zip(texts, reference, strict=True):
        r = r.astype(np.float64)
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + 1)
        gen = og.Generator(model, params)
        gen.append_tokens(np.array(ids, dtype=np.int32))
        o = np.asarray(gen.get_output("logits"))[0].astype(np.float64)
        del gen
        vocab = min(r.shape[-1], o.shape[-1])  # padded vocabularies: compare the real ids
        r, o = r[:, :vocab], o[:, :vocab]
        ok = np.isfinite(o).all(-1)
        n += len(ids)
        nonfinite += int((~ok).sum())
        agree += int(((r.argmax(-1) == o.argmax(-1)) & ok).sum())
        r, o = r[ok], o[ok]
        if not len(r):
            continue
        finite_n += len(r)
        diff = np.abs(r - o)
        max_diff = max(max_diff, float(diff.max()))
        sum_abs += float(diff.mean(-1).sum())
        lr = r - r.max(-1, keepdims=True)
        lr -= np.log(np.exp(lr).sum(-1, keepdims=True))
        lo = o - o.max(-1, keepdims=True)
        lo -= np.log(np.exp(lo).sum(-1, keepdims=True))
        sum_kl += float((np.exp(lr) * (lr - lo)).sum())
        sum_std += float(r.std(-1).sum())
    texts_n = len(texts)
    per = max(finite_n, 1)
    return {"checked": True, "reference": str(hf_dir), "reference_dtype": ref_dtype, "texts": texts_n, "positions": n,
            "vocab": vocab, "top1_agreement": round(agree / n, 4),
            "max_abs_logit_diff": round(max_diff, 4) if finite_n else None,
            "mean_abs_logit_diff": round(sum_abs / per, 4) if finite_n else None,
            "mean_kl": round(sum_kl / per, 5) if finite_n else None,
            "ref_logit_std": round(sum_std / per, 3) if finite_n else None,
            "nonfinite_positions": nonfinite, "tokenizer_match": round(same / texts_n, 4)}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m runner.models.fidelity")
    p.add_argument("hf_dir", type=Path, help="Hugging Face reference folder (the build's source)")
    p.add_argument("onnx_dir", type=Path, help="built ONNX Runtime GenAI folder")
    p.add_argument("out", type=Path, help="JSON file to write the figures to")
    a = p.parse_args()
    result = measure(a.hf_dir, a.onnx_dir)
    a.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result), file=sys.stderr)


if __name__ == "__main__":
    main()
