"""The device a model really ran on: recorded per job, and a mismatch with `hardware` fails the job,
so no CPU figure is ever labelled GPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnxruntime
from conftest import SMALL, run_cli
from scripted_server import Script, ScriptedServer

ENDPOINT = ["run", "backend=openai", "model.id=scripted-model", "prompts=smoke", "run.rounds=1", "run.warmup=0",
            "tracking.enabled=false"]


def _endpoint_job(tmp_path: Path, script: Script, *extra: str) -> tuple[int, dict, str]:
    with ScriptedServer(script) as srv:
        done = run_cli(*ENDPOINT, f"backend.base_url={srv.base_url}", *extra, f"hydra.run.dir={tmp_path}")
    return done.returncode, json.loads((tmp_path / "summary.json").read_text()), done.stderr


def test_an_endpoint_that_reports_cpu_fails_a_gpu_job(tmp_path: Path):
    cpu = Script(ttft_s=0.01, tpot_s=0.001, tokens=5,
                 model_info={"runtime": {"deviceType": "CPU", "executionProvider": "CPUExecutionProvider"}})
    code, s, _ = _endpoint_job(tmp_path / "gpu", cpu, "hardware=gpu")
    assert code == 1 and s["status"] == "failed" and s["n"] == 0
    assert "asked for the cuda execution provider, but the model runs on cpu" in s["error"]
    code, s, _ = _endpoint_job(tmp_path / "cpu", cpu, "hardware=cpu")
    assert code == 0 and s["device"] == {"asked": "cpu", "ran_on": "cpu", "verified": True,
                                         "source": s["device"]["source"]}
    assert "/models entry" in s["device"]["source"] and s["runtime"]["execution_provider"] == "cpu"


def test_an_endpoint_that_reports_nothing_is_recorded_unverified(tmp_path: Path):
    code, s, _ = _endpoint_job(tmp_path / "j", Script(ttft_s=0.01, tpot_s=0.001, tokens=5), "hardware=gpu")
    assert code == 0 and s["device"]["ran_on"] is None and not s["device"]["verified"]
    assert s["runtime"]["execution_provider"] == "unverified"
    assert "does not report" in s["device"]["source"]
    # a GPU asked for and never confirmed is said wherever the figures appear
    report = (tmp_path / "j" / "report.md").read_text()
    assert "gpu (asked; ran on: **unverified**" in report and "not measured for endpoints" in report
    import csv

    with (tmp_path / "j" / "summary.csv").open() as fh:
        assert next(csv.DictReader(fh))["execution_provider"] == "unverified"
    decision = json.loads((tmp_path / "j" / "decision.json").read_text())
    assert any("device unverified" in n for n in decision["candidates"][0]["notes"])


def test_in_process_model_records_the_provider_its_folder_runs_on(tmp_path: Path, pack_home):
    done = run_cli("run", f"model={SMALL}", "prompts=smoke", "run.rounds=1", "run.warmup=0",
                   "tracking.enabled=false", f"hydra.run.dir={tmp_path / 'j'}")
    assert done.returncode == 0, done.stderr
    s = json.loads((tmp_path / "j" / "summary.json").read_text())
    assert s["device"]["ran_on"] == "cpu" and s["device"]["verified"] and "genai_config.json" in s["device"]["source"]
    env = s["environment"]["execution_providers"]
    assert env["onnxruntime"] == onnxruntime.get_available_providers()


def test_a_folder_built_for_cuda_fails_a_cpu_job_before_load(tmp_path: Path, fresh_home: Path, pack_home: Path):
    folder = tmp_path / "cuda-build"
    shutil.copytree(pack_home / "models" / "smollm2-135m-int4", folder)
    cfg_path = folder / "genai_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model"]["decoder"]["session_options"]["provider_options"] = [{"cuda": {}}]
    cfg_path.write_text(json.dumps(cfg))
    env = {"SLMBENCH_HOME": str(fresh_home)}
    imported = run_cli("models", "import", str(folder), "--alias", "cuda-build", env=env)
    assert imported.returncode == 0, imported.stderr
    done = run_cli("run", "model=cuda-build", "prompts=smoke", "run.rounds=1", "tracking.enabled=false",
                   f"hydra.run.dir={tmp_path / 'j'}", env=env)
    s = json.loads((tmp_path / "j" / "summary.json").read_text())
    assert done.returncode == 1 and s["status"] == "failed" and s["load_s"] is None  # never loaded
    assert "asked for the cpu execution provider, but the model runs on cuda" in s["error"]


def test_bad_provider_names_are_config_errors():
    done = run_cli("run", "hardware.execution_provider=warp", "prompts=smoke")
    assert done.returncode == 2 and "hardware.execution_provider='warp' is not an execution provider" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("run", "hardware=cpu", "hardware.execution_provider=cuda", "prompts=smoke")
    assert done.returncode == 2 and "does not run on hardware.device=cpu" in done.stderr


def test_env_lists_providers_devices_and_versions():
    done = run_cli("env")
    assert done.returncode == 0, done.stderr
    for provider in onnxruntime.get_available_providers():
        assert provider in done.stdout
    assert f"onnxruntime {onnxruntime.__version__}" in done.stdout and "foundry-local-sdk" in done.stdout
    assert "gpu: device gpu, provider cuda" in done.stdout
    data = json.loads(run_cli("env", "--json").stdout)
    presets = {p["name"]: p for p in data["hardware_presets"]}
    assert presets["cpu"]["usable_in_process"]
    assert presets["gpu"]["usable_in_process"] == ("CUDAExecutionProvider" in onnxruntime.get_available_providers())
