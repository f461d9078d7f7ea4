"""GGUF -> Hugging Face folder -> ONNX Runtime GenAI folder.

Runs as its own process (`python -m runner.models.convert ...`) so torch and
transformers never load into the CLI or the timed runner, and their memory is
returned to the OS when a build ends.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

# Gemma 3 270M ships as a base model: its GGUF has no chat template, so the
# turn format is supplied here (Gemma's documented <start_of_turn> format).
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = 'user' %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
GEMMA_END_OF_TURN_ID = 106


def dequantize(gguf: Path, out: Path, chat_template: str | None) -> None:
    """Load a quantized GGUF file as float32 weights and save a plain HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    _parse_gguf_once()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    qc = GgufConfig(gguf_file=gguf.name, dequantize=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=qc, dtype=torch.float32
    )
    # The GGUF quantizer marks the model unserializable; the weights are plain
    # float32 by now, so drop it before saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if chat_template and not getattr(tok, "chat_template", None):
        tok.chat_template = chat_template
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def _parse_gguf_once() -> None:
    """transformers reads the GGUF file three times (config, tokenizer, weights: 4 s each for
    SmolLM2's 49k-token vocabulary) and builds gguf's tensor-name table once per tensor (397
    times, 6 s): 14 of the 20 s measured dequantizing SmolLM2 alone. The file does not change
    while this process runs, nor does the table for an architecture: build each once.
    Both are looked up on the `gguf` module when transformers calls them."""
    import functools

    import gguf

    if not hasattr(gguf.GGUFReader, "cache_info"):
        gguf.GGUFReader = functools.cache(gguf.GGUFReader)
        gguf.get_tensor_name_map = functools.cache(gguf.get_tensor_name_map)


def _patch_rope_config() -> None:
    """transformers 5 nests rope settings per layer type and folds Gemma 3's
    `rope_local_base_freq` into them; the ORT GenAI builder wants the flat form plus
    that attribute. Patch the loaded config object the builder sees."""
    from transformers import AutoConfig

    original = AutoConfig.from_pretrained.__func__

    def from_pretrained(cls, *args, **kwargs):
        config = original(cls, *args, **kwargs)
        nested = getattr(config, "rope_parameters", None)
        if isinstance(nested, dict) and isinstance(nested.get("full_attention"), dict):
            local = nested.get("sliding_attention") or {}
            if "rope_theta" in local:
                config.rope_local_base_freq = local["rope_theta"]
            config.rope_parameters = dict(nested["full_attention"])
            config.rope_scaling = dict(nested["full_attention"])
        return config

    AutoConfig.from_pretrained = classmethod(from_pretrained)


def build_onnx(hf_dir: Path, out: Path, precision: str, cache: Path, context_length: int,
               extra_options: list[str], stop_token_ids: list[int]) -> None:
    """Run the ORT GenAI model builder, then pin the context window and stop tokens."""
    import runpy

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    argv = ["builder", "-i", str(hf_dir), "-o", str(tmp), "-p", precision, "-e", "cpu",
            "-c", str(cache)]
    if extra_options:
        argv += ["--extra_options", *extra_options]
    sys.argv = argv
    _patch_rope_config()
    # The builder is a script (its main block parses argv); run it as one.
    runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__")
    cfg_path = tmp / "genai_config.json"
    cfg = json.loads(cfg_path.read_text())
    # The session reserves KV cache for the whole window: a smaller window is
    # less memory and a faster first token (measured: 0.5-1.6 s -> 60 ms on Gemma).
    cfg["model"]["context_length"] = context_length
    cfg["search"]["max_length"] = context_length
    if stop_token_ids:
        eos = cfg["model"].get("eos_token_id")
        eos = eos if isinstance(eos, list) else [eos]
        cfg["model"]["eos_token_id"] = sorted(set(eos) | set(stop_token_ids))
    cfg_path.write_text(json.dumps(cfg, indent=4))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m runner.models.convert")
    sub = p.add_subparsers(dest="step", required=True)
    d = sub.add_parser("dequantize")
    d.add_argument("gguf", type=Path)
    d.add_argument("out", type=Path)
    d.add_argument("--gemma-template", action="store_true")
    b = sub.add_parser("build")
    b.add_argument("hf_dir", type=Path)
    b.add_argument("out", type=Path)
    b.add_argument("--precision", required=True, choices=["int4", "int8", "fp32"])
    b.add_argument("--cache", type=Path, required=True)
    b.add_argument("--context-length", type=int, required=True)
    b.add_argument("--extra-option", action="append", default=[])
    b.add_argument("--stop-token-id", type=int, action="append", default=[])
    a = p.parse_args()
    if a.step == "dequantize":
        dequantize(a.gguf, a.out, GEMMA_CHAT_TEMPLATE if a.gemma_template else None)
    else:
        build_onnx(a.hf_dir, a.out, a.precision, a.cache, a.context_length, a.extra_option,
                   a.stop_token_id)


if __name__ == "__main__":
    main()
