"""GGUF -> Hugging Face folder -> ONNX Runtime GenAI folder.

Runs as its own process (`python -m runner.models.convert ...`) so torch and
transformers never load into the CLI or the timed runner, and their memory is
returned to the OS when a build ends.
"""

from __future__ import annotations

import argparse
import importlib
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


def dequantize(gguf: Path, out: Path, chat_template: str | None, dtype: str = "float32") -> None:
    """Load a quantized GGUF file as plain weights of `dtype` (float32 or bfloat16) and save an HF
    folder. transformers casts each tensor as it is dequantized, so bfloat16 never holds a float32
    copy of the model (Qwen2.5 1.5B: 5.7 GB peak)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    _parse_gguf_once()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    qc = GgufConfig(gguf_file=gguf.name, dequantize=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=qc, dtype=getattr(torch, dtype)
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


def _quantize_weight_by_weight() -> None:
    """Make the builder quantize one MatMul weight at a time, in place in its graph.

    The builder's own int4/int8 pass (`Model.to_nbits`) serializes the whole float32 graph to one
    protobuf and quantizes that: every weight in float32 twice over beside the torch model, 13.4 GB
    peak for Qwen2.5 1.5B. Here each weight is materialized in float32, quantized by the same
    ONNX Runtime kernel (MLAS blockwise, same block size, symmetry and accuracy level) and dropped
    before the next, so the float32 model never exists whole. Other settings (QDQ, k-quant or RTN,
    per-node bit overrides, CUDA prepacking) keep the builder's own pass."""
    import numpy as np
    import onnx_ir as ir
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        DefaultWeightOnlyQuantizer,
    )
    from onnxruntime.quantization.quant_utils import QuantFormat

    # The builder script imports its classes as the top-level `builders` (the package puts its
    # folder on sys.path), not through the package: patch the class it will use.
    importlib.import_module("onnxruntime_genai.models")
    Model = importlib.import_module("builders.base").Model

    builder_pass = Model.to_nbits

    def to_nbits(self) -> ir.Model:
        q = self.quant_attrs
        if (q["use_qdq"] or getattr(self, "quantization_algo", "default") != "default" or self.ep != "cpu"
                or getattr(self, "int4_customized_weight_config", None)
                or getattr(self, "exact_quant_overrides", None) or set(q["op_types_to_quantize"]) != {"MatMul"}):
            return builder_pass(self)
        bits, block = q["bits"], q["matmul_block_size"]
        quantizer = DefaultWeightOnlyQuantizer(DefaultWeightOnlyQuantConfig(
            block_size=block, is_symmetric=q["is_symmetric"], accuracy_level=q["accuracy_level"],
            quant_format=QuantFormat.QOperator, op_types_to_quantize=("MatMul",), bits=bits))
        graph = self.model.graph
        excluded = set(q["nodes_to_exclude"])
        for node in list(graph):
            weight = node.inputs[1] if node.op_type == "MatMul" else None
            if (weight is None or node.name in excluded or weight.const_value is None
                    or weight.shape is None or len(weight.shape) != 2):
                continue
            rows, cols = (int(d) for d in weight.shape)  # K x N
            packed, scales, zero_points = quantizer.qbits_block_quant(
                np.ascontiguousarray(weight.const_value.numpy(), dtype=np.float32))
            inputs = [node.inputs[0], _initializer(graph, f"{weight.name}_Q{bits}", packed),
                      _initializer(graph, f"{weight.name}_scales", scales)]
            if not q["is_symmetric"]:
                inputs.append(_initializer(graph, f"{weight.name}_zero_points", zero_points))
            attributes = {"K": rows, "N": cols, "bits": bits, "block_size": block}
            if q["accuracy_level"]:
                attributes["accuracy_level"] = q["accuracy_level"]
            nbits = ir.node("MatMulNBits", inputs, attributes=attributes, domain="com.microsoft",
                            name=f"{node.name}_Q{bits}")
            ir.convenience.replace_nodes_and_values(graph, node, [node], [nbits], node.outputs, nbits.outputs)
            graph.initializers.pop(weight.name)
            weight.const_value = None  # the float32 copy goes now, not at the end
        return self.model

    Model.to_nbits = to_nbits


def _initializer(graph, name: str, array):
    import onnx_ir as ir

    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.tensor(array, name=name))
    graph.register_initializer(value)
    return value


def build_onnx(hf_dir: Path, out: Path, precision: str, cache: Path, context_length: int,
               extra_options: list[str], stop_token_ids: list[int], session_options: dict[str, int] | None = None
               ) -> None:
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
    _quantize_weight_by_weight()
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
    cfg["model"]["decoder"]["session_options"].update(session_options or {})
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
    d.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    b = sub.add_parser("build")
    b.add_argument("hf_dir", type=Path)
    b.add_argument("out", type=Path)
    b.add_argument("--precision", required=True, choices=["int4", "int8", "fp32"])
    b.add_argument("--cache", type=Path, required=True)
    b.add_argument("--context-length", type=int, required=True)
    b.add_argument("--extra-option", action="append", default=[])
    b.add_argument("--stop-token-id", type=int, action="append", default=[])
    b.add_argument("--session-option", action="append", default=[], help="KEY=INT, into genai_config.json")
    a = p.parse_args()
    if a.step == "dequantize":
        dequantize(a.gguf, a.out, GEMMA_CHAT_TEMPLATE if a.gemma_template else None, a.dtype)
    else:
        options = {k: int(v) for k, _, v in (o.partition("=") for o in a.session_option)}
        build_onnx(a.hf_dir, a.out, a.precision, a.cache, a.context_length, a.extra_option,
                   a.stop_token_id, options)


if __name__ == "__main__":
    main()
