"""`slmbench models`: the pack on Foundry Local, by hand, and every bad input."""

from __future__ import annotations

import json
import shutil

from conftest import SMALL, copy_hf, run_cli

PACK = {"smollm2-135m-int4", "smollm2-135m-int8", "smollm2-135m-fp32", "gemma3-270m-int4"}


def test_list_json_shows_pack_cached(pack_home):
    done = run_cli("models", "list", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["alias"]: r for r in json.loads(done.stdout)}
    assert PACK <= set(rows)
    for alias in PACK:
        row = rows[alias]
        assert row["cached"] is True and row["registered"] is True
        assert row["size_mb"] > 50 and row["license"] in ("Apache-2.0", "Gemma Terms of Use")
    assert rows["gemma3-270m-int4"]["license"] == "Gemma Terms of Use"
    # precision is a real axis: the folders differ in size as int4 < int8 < fp32
    assert rows["smollm2-135m-int4"]["size_mb"] < rows["smollm2-135m-int8"]["size_mb"] < rows["smollm2-135m-fp32"]["size_mb"]


def test_list_table(pack_home):
    done = run_cli("models", "list")
    assert done.returncode == 0
    assert "gemma3-270m-int4" in done.stdout and "Gemma Terms of Use" in done.stdout


def test_run_prints_answer_and_timing(pack_home):
    done = run_cli("models", "run", SMALL, "--prompt", "List three benefits of local inference.",
                   "--max-tokens", "48")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) > 10
    assert "ttft" in done.stderr and "48 tokens" in done.stderr and "decode_tps" in done.stderr and "tokens/s" in done.stderr


def test_gemma_base_model_answers_with_template(pack_home):
    done = run_cli("models", "run", "gemma3-270m-int4", "--prompt", "What is the capital of France?",
                   "--max-tokens", "24")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()  # a weak base model: we check the plumbing, not the answer
    # <end_of_turn> is a stop token: the template's markers never leak into the answer
    assert "<start_of_turn>" not in done.stdout and "<end_of_turn>" not in done.stdout


def test_interactive_chat_reads_stdin(pack_home):
    done = run_cli("models", "run", SMALL, "--max-tokens", "16", input="Say hello.\n\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and done.stderr.count("[ttft") == 1


def test_info_and_cache(pack_home):
    info = run_cli("models", "info", SMALL)
    assert info.returncode == 0 and "Apache-2.0" in info.stdout and "built: True" in info.stdout
    cache = run_cli("models", "cache")
    assert cache.returncode == 0 and SMALL in cache.stdout and "total:" in cache.stdout


def _one_line_error(done, *needles):
    assert done.returncode != 0
    err = done.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_bad_inputs_fail_cleanly(tmp_path, pack_home):
    _one_line_error(run_cli("models", "run", "no-such-model", "--prompt", "x"), "no-such-model")
    _one_line_error(run_cli("models", "import", "/nonexistent.gguf", "--alias", "x"), "/nonexistent.gguf")
    junk = tmp_path / "notes.gguf"
    junk.write_text("not weights")
    _one_line_error(run_cli("models", "import", str(junk), "--alias", "x"), "not a GGUF")
    _one_line_error(run_cli("models", "import", str(tmp_path), "--alias", "x"), "not a GGUF file")
    _one_line_error(run_cli("models", "import", str(junk), "--alias", SMALL), "already exists")
    _one_line_error(run_cli("models", "info", "nope"), "unknown model alias")


def test_corrupt_registry_is_a_clear_error(fresh_home):
    registry = fresh_home / "foundry" / "cache" / "foundry.local.modelinfo.json"
    registry.parent.mkdir(parents=True)
    registry.write_text("{ this is not json")
    _one_line_error(run_cli("models", "list", env={"SLMBENCH_HOME": str(fresh_home)}), "corrupt")
    assert registry.read_text() == "{ this is not json"  # reported, not overwritten


def test_import_onnx_folder_run_and_remove(fresh_home, pack_home):
    env = {"SLMBENCH_HOME": str(fresh_home)}
    source = pack_home / "models" / "smollm2-135m-int4"
    done = run_cli("models", "import", str(source), "--alias", "my-smol", "--license", "Apache-2.0", env=env)
    assert done.returncode == 0, done.stderr
    assert (fresh_home / "conf" / "model" / "my-smol.yaml").is_file()
    rows = {r["alias"]: r for r in json.loads(run_cli("models", "list", "--json", env=env).stdout)}
    assert rows["my-smol"]["cached"] is True and rows["my-smol"]["license"] == "Apache-2.0"
    ran = run_cli("models", "run", "my-smol", "--prompt", "Hi", "--max-tokens", "8", env=env)
    assert ran.returncode == 0, ran.stderr
    _one_line_error(run_cli("models", "import", str(source), "--alias", "my-smol", env=env), "already exists")
    removed = run_cli("models", "remove", "my-smol", env=env)
    assert removed.returncode == 0 and "unregistered" in removed.stdout
    assert (source / "genai_config.json").is_file()  # never the source
    assert "my-smol" not in run_cli("models", "list", "--json", env=env).stdout


def test_half_built_model_is_rebuilt_then_skipped(fresh_home, pack_home):
    copy_hf(pack_home, fresh_home)
    env = {"SLMBENCH_HOME": str(fresh_home)}
    half = fresh_home / "models" / "smollm2-135m-int4"
    half.mkdir(parents=True)
    (half / "genai_config.json").write_text("{}")  # interrupted: no completion stamp
    first = run_cli("models", "pack", "smollm2-135m-int4", env=env)
    assert first.returncode == 0, first.stderr
    assert "build ONNX Runtime GenAI int4" in first.stdout
    second = run_cli("models", "pack", "smollm2-135m-int4", env=env)
    assert second.returncode == 0 and "already built" in second.stdout
    assert "build ONNX" not in second.stdout


def test_import_gguf_converts(fresh_home, pack_home):
    gguf = pack_home / "weights" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    env = {"SLMBENCH_HOME": str(fresh_home)}
    done = run_cli("models", "import", str(gguf), "--alias", "smol-gguf", "--precision", "int4", env=env)
    assert done.returncode == 0, done.stderr
    ran = run_cli("models", "run", "smol-gguf", "--prompt", "What is 2+2?", "--max-tokens", "8", env=env)
    assert ran.returncode == 0, ran.stderr
    shutil.rmtree(fresh_home / "models", ignore_errors=True)


def test_import_hf_folder_converts_checks_and_runs(tmp_path, fresh_home, pack_home):
    """A small Hugging Face folder made here (2 layers, random weights, SmolLM2's tokenizer):
    imported, converted, its fidelity measured against itself, run."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hf = tmp_path / "tiny-hf"
    reference = next((pack_home / "hf").glob("SmolLM2-135M-Instruct*"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(hf)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (reference / name).is_file():
            shutil.copy(reference / name, hf / name)
    env = {"SLMBENCH_HOME": str(fresh_home)}
    done = run_cli("models", "import", str(hf), "--alias", "tiny-hf", "--precision", "fp32", env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    info = json.loads(run_cli("models", "list", "--json", env=env).stdout)
    tiny = next(m for m in info if m["alias"] == "tiny-hf")
    assert tiny["built"] and tiny["fidelity"]["checked"] and tiny["fidelity"]["top1_agreement"] > 0.98
    ran = run_cli("models", "run", "tiny-hf", "--prompt", "Hello", "--max-tokens", "4", env=env)
    assert ran.returncode == 0, ran.stderr
    # a folder is an HF model only with config.json and weights
    only_config = tmp_path / "only-config"
    only_config.mkdir()
    shutil.copy(hf / "config.json", only_config / "config.json")
    _one_line_error(run_cli("models", "import", str(only_config), "--alias", "x", env=env), "no weights")
    only_weights = tmp_path / "only-weights"
    only_weights.mkdir()
    (only_weights / "pytorch_model.bin").write_bytes(b"\0" * 16)
    _one_line_error(run_cli("models", "import", str(only_weights), "--alias", "x", env=env), "no config.json")
