"""Conversion fidelity on the real pack: the stored figures make sense, a broken build is
flagged suspect (measured once, without a rebuild), and a model with no loadable float32
reference is recorded as not checked, with the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from conftest import copy_hf, run_cli

from runner.config.schema import ModelConfig, SourceConfig
from runner.models import fidelity, pack

SMOL_HF = "SmolLM2-135M-Instruct.Q4_1-b179c9523d0e"


def _rows(env: dict | None = None) -> dict:
    done = run_cli("models", "list", "--json", env=env)
    assert done.returncode == 0, done.stderr
    return {r["alias"]: r for r in json.loads(done.stdout)}


def test_pack_figures_are_stored_shown_and_sane(pack_home):
    rows = _rows()
    for alias in pack.SMALL_PACK:
        f = rows[alias]["fidelity"]
        assert f["checked"] is True and f["suspect"] is False, (alias, f)
        assert f["positions"] >= 100 and f["tokenizer_match"] == 1.0 and f["nonfinite_positions"] == 0
    fp32, int8, int4 = (rows[f"smollm2-135m-{p}"]["fidelity"] for p in ("fp32", "int8", "int4"))
    # the fp32 build is the reference's own graph: equal up to float rounding
    assert fp32["top1_agreement"] >= 0.98 and fp32["max_abs_logit_diff"] < 0.05
    # re-quantizing loses something, more at int4 than at int8
    assert int4["top1_agreement"] < int8["top1_agreement"] <= fp32["top1_agreement"]
    assert int4["mean_kl"] > int8["mean_kl"] > fp32["mean_kl"] - 1e-9
    assert int4["max_abs_logit_diff"] > int8["max_abs_logit_diff"] > fp32["max_abs_logit_diff"]
    # stored with the build, keyed to its stamp (a rebuild measures again)
    folder = pack_home / "models" / "smollm2-135m-int4"
    stored = json.loads((folder / fidelity.FILE).read_text())
    assert stored["stamp"] == json.loads((folder / pack.STAMP).read_text())
    for alias in ("smollm2-135m-int4", "gemma3-270m-int4"):
        info = run_cli("models", "info", alias)
        f = rows[alias]["fidelity"]
        assert info.returncode == 0, info.stderr
        assert f"top-1 agreement {f['top1_agreement']:.3f}" in info.stdout
        assert f"max |logit diff| {f['max_abs_logit_diff']:.3g}" in info.stdout


def _drop_rotary(folder: Path) -> None:
    """A classic conversion bug: rotary embeddings lost (cos 1, sin 0), so positions vanish."""
    import onnx

    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    where = {t.name: {e.key: e.value for e in t.external_data} for t in model.graph.initializer}
    with (folder / "model.onnx.data").open("r+b") as fh:
        for name, value in (("cos_cache", 1.0), ("sin_cache", 0.0)):
            fh.seek(int(where[name]["offset"]))
            fh.write(np.full(int(where[name]["length"]) // 4, value, np.float32).tobytes())


def test_broken_build_is_flagged_suspect_once_without_rebuild(fresh_home, pack_home):
    env = {"SLMBENCH_HOME": str(fresh_home)}
    copy_hf(pack_home, fresh_home)
    folder = fresh_home / "models" / "smollm2-135m-int4"
    shutil.copytree(pack_home / "models" / "smollm2-135m-int4", folder)
    (folder / fidelity.FILE).unlink()  # built before fidelity was measured
    _drop_rotary(folder)
    first = run_cli("models", "pack", "smollm2-135m-int4", env=env)
    assert first.returncode == 0, first.stderr
    assert "already built" in first.stdout and "build ONNX" not in first.stdout and "dequantize" not in first.stdout
    assert "fidelity measured" in first.stdout and "fidelity SUSPECT: top-1 agreement" in first.stdout
    record = json.loads((folder / fidelity.FILE).read_text())
    assert record["checked"] is True and record["top1_agreement"] < fidelity.threshold("int4")
    second = run_cli("models", "pack", "smollm2-135m-int4", env=env)
    assert second.returncode == 0, second.stderr
    assert "fidelity measured" not in second.stdout and "fidelity SUSPECT" in second.stdout  # stored, not redone
    table = run_cli("models", "list", env=env).stdout
    assert any(ln.startswith("smollm2-135m-int4 ") and "SUSPECT" in ln for ln in table.splitlines()), table
    assert _rows(env)["smollm2-135m-int4"]["fidelity"]["suspect"] is True


def test_onnx_import_has_no_reference_so_not_checked(fresh_home, pack_home):
    env = {"SLMBENCH_HOME": str(fresh_home)}
    source = pack_home / "models" / "smollm2-135m-int4"
    done = run_cli("models", "import", str(source), "--alias", "as-is", env=env)
    assert done.returncode == 0, done.stderr
    assert "fidelity not checked: imported as a built ONNX Runtime GenAI folder" in done.stdout
    f = _rows(env)["as-is"]["fidelity"]
    assert f["checked"] is False and "no float32 Hugging Face reference" in f["reason"] and f["suspect"] is None
    assert "fidelity: not checked: imported as a built" in run_cli("models", "info", "as-is", env=env).stdout
    assert json.loads((source / fidelity.FILE).read_text())["checked"] is True  # the source is not written to
    removed = run_cli("models", "remove", "as-is", env=env)
    assert removed.returncode == 0 and not (fresh_home / "models" / "as-is").exists()


def test_unloadable_reference_is_not_checked_with_reason(fresh_home, pack_home, monkeypatch, tmp_path):
    monkeypatch.setenv("SLMBENCH_HOME", str(fresh_home))
    bad = tmp_path / "hf-bad"
    shutil.copytree(pack_home / "hf" / SMOL_HF, bad, ignore=shutil.ignore_patterns("*.safetensors"))
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)  # truncated weights
    spec = ModelConfig(alias="bad-ref", id="bad-ref-generic-cpu:1", precision="int4",
                       source=SourceConfig(kind="hf", path=str(bad)))
    shutil.copytree(pack_home / "models" / "smollm2-135m-int4", fresh_home / "models" / "bad-ref")
    lines: list[str] = []
    found = pack.check_fidelity(spec, log=lines.append)
    assert found["checked"] is False and found["suspect"] is None
    assert str(bad) in found["reason"] and "could not be loaded" in found["reason"], found
    assert any(ln.startswith("  fidelity not checked: reference") for ln in lines), lines
    assert pack.fidelity_of(spec) == found  # stored: not measured again


def test_verdict_rules():
    good = {"checked": True, "top1_agreement": 0.6, "tokenizer_match": 1.0, "nonfinite_positions": 0}
    assert fidelity.assess(good, "int4")["suspect"] is False
    assert fidelity.assess(good, "fp32")["suspect"] is True  # fp32 must match the reference
    assert fidelity.assess({**good, "tokenizer_match": 0.8}, "int4")["suspect"] is True
    assert fidelity.assess({**good, "nonfinite_positions": 3}, "int4")["suspect"] is True
    assert fidelity.assess(None, "int4") is None
    assert "not measured" in fidelity.summary(None)
