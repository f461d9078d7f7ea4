"""Is a Ctrl-C ever lost? The scenario of tests/test_interruptions.py's Ctrl-C test, N times, the
SIGINT sent at varied moments, each run placed in the phase the signal arrived in (issue 38).

Each run is the test's sweep: `slmbench run -m` against the scripted OpenAI-compatible server
(tests/scripted_server.py, 127.0.0.1), rag-basics x 10 rounds (40 requests of ~0.25 s), tracked to
a fresh SQLite MLflow store. The sweep stamps its phases on stderr (SLMBENCH_PHASES=1, see
runner/interrupts.py): start-up, tracking set-up, job start-up, measuring, qualification,
grading, summary, job tracking, sweep report, decision, tracking end, exit. The signal goes at:

- `test`: as the test sends it, once requests.jsonl holds 5 records;
- `time`: a uniform random delay after the launch (0 to 1.2x an unsignalled run's length);
- `phase`: as a random phase starts (the sweep stops itself there, SLMBENCH_PHASES=stop:NAME, is
  signalled, then continued) or a random 0 to `--offset` s (0.3) into it;
- `mixed` (default): each run draws one of the three.

A run passes when the sweep exits 130 with no traceback, its records are whole lines and its
MLflow parent run (if one was opened) is KILLED; FINISHED counts too when the signal came after
the sweep closed it (tracking end, exit). The table gives, per phase the signal arrived in:
runs, exit 130, other exit codes, parent statuses. `--load` keeps every core busy with spinning
processes for the whole time; `--ignored` starts each sweep with SIGINT ignored, as a shell
script's background job (or a test runner started as one) would, to show the failure the
issue reported.

Run: nice -n 19 .venv/bin/python benchmarks/ctrl_c.py --runs 100 --load [--at test] [--minutes 30]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

PHASES = ["start-up", "tracking set-up", "job start-up", "measuring", "qualification", "grading", "summary",
          "job tracking", "sweep report", "decision", "tracking end"]
JOB = "0_scripted-model_deterministic_cpu"
# The sweep starts with SIGINT at its default (or ignored, --ignored), whatever the disposition this
# script inherited: a disposition of SIG_IGN survives exec, and Python then never installs its handler.
TRAMPOLINE = ("import os, signal, sys; signal.signal(signal.SIGINT, getattr(signal, sys.argv[1])); "
              "os.execv(sys.argv[2], sys.argv[2:])")


def sweep_command(base_url: str, sweep: Path, source: Path | None, ignored: bool) -> list[str]:
    if source is None:
        cmd = [str(Path(sys.executable).with_name("slmbench"))]
    else:
        cmd = [sys.executable, "-m", "runner.cli"]
    cmd += ["run", "-m", "backend=openai", "model.id=scripted-model", "prompts=rag-basics", "run.rounds=10",
            "run.warmup=0", f"backend.base_url={base_url}", f"hydra.sweep.dir={sweep}"]
    return [sys.executable, "-c", TRAMPOLINE, "SIG_IGN" if ignored else "SIG_DFL", *cmd]


def sweep_env(root: Path, source: Path | None, phases: str = "1") -> dict[str, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "SLMBENCH_PHASES": phases}
    if source is not None:
        env["PYTHONPATH"] = str(source.resolve())
    return env


def spin() -> None:
    while True:
        pass


def signal_disposition(pid: int) -> str:
    """How the process takes SIGINT now: caught, ignored or default (from /proc)."""
    try:
        fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":\t" in line)
    except OSError:
        return "gone"
    bit = 1 << (signal.SIGINT - 1)
    if int(fields["SigIgn"], 16) & bit:
        return "ignored"
    return "caught" if int(fields["SigCgt"], 16) & bit else "default"


def stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def parent_status(db: Path) -> str:
    if not db.is_file():
        return "no store"
    try:
        with sqlite3.connect(db) as con:
            rows = con.execute("SELECT r.status FROM runs r JOIN tags t ON r.run_uuid = t.run_uuid "
                               "WHERE t.key = 'slmbench.kind' AND t.value = 'sweep'").fetchall()
    except sqlite3.Error:
        return "no run"
    return ",".join(r[0] for r in rows) or "no run"


def whole_records(path: Path) -> int | None:
    """The number of records, or None when a line is not a whole record."""
    if not path.is_file():
        return 0
    text = path.read_text()
    if text and not text.endswith("\n"):
        return None
    try:
        return len([json.loads(x) for x in text.splitlines()])
    except ValueError:
        return None


def one_run(base_url: str, root: Path, how: str, rng: random.Random, typical_s: float, source: Path | None,
            ignored: bool, phases: list[str], max_offset: float) -> dict:
    sweep = root / "sweep"
    env = sweep_env(root, source)
    target, offset = None, 0.0
    if how == "phase":
        target = rng.choice(phases)
        offset = 0.0 if rng.random() < 0.5 else rng.uniform(0, max_offset)
        if offset == 0.0:
            env["SLMBENCH_PHASES"] = f"stop:{target}"
    stamps: list[tuple[float, str]] = []
    lines: list[str] = []
    seen = threading.Event()

    t_launch = time.time()
    proc = subprocess.Popen(sweep_command(base_url, sweep, source, ignored), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=root)

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("slmbench: phase "):
                name, t = line[len("slmbench: phase "):].rsplit(" ", 2)[:2]
                stamps.append((float(t), name))
                if name == target:
                    seen.set()
        seen.set()  # the process ended

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    records = sweep / JOB / "requests.jsonl"
    deadline = time.monotonic() + 120
    if how == "test":
        while time.monotonic() < deadline and not (records.exists() and len(records.read_text().splitlines()) >= 5):
            time.sleep(0.05)
    elif how == "time":
        time.sleep(rng.uniform(0, 1.2 * typical_s))
    else:
        seen.wait(120)
        if offset == 0.0:  # stopped at the phase's start: the signal is taken there, as it resumes
            t_stop = time.monotonic()
            while proc.poll() is None and not stopped(proc.pid) and time.monotonic() - t_stop < 5:
                time.sleep(0.001)
        else:
            time.sleep(offset)
    running = proc.poll() is None
    disposition = signal_disposition(proc.pid) if running else "gone"
    t_signal = time.time()
    if running:
        proc.send_signal(signal.SIGINT)
        if offset == 0.0 and how == "phase":
            proc.send_signal(signal.SIGCONT)
    try:
        proc.wait(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(5)
    t_end = time.time()
    err = "".join(lines)
    before = [name for t, name in stamps if t <= t_signal]
    if not running or "end" in before:  # "end": its last stamp, right before it exits (os._exit)
        at = "not signalled: the sweep had ended"
        running = False
    elif not before:
        at = "before start-up"
    else:
        at = before[-1]
    said = next((x.split("interrupted during ", 1)[1].split(";")[0] for x in lines if "interrupted during " in x),
                None)
    recs = whole_records(records)
    status = parent_status(root / "mlflow.db")
    ok = None if not running else (  # None: not signalled, the sweep had ended (a `time` draw past its end)
        proc.returncode == 130 and "Traceback" not in err and recs is not None
        and (status in ("KILLED", "no store", "no run") or (status == "FINISHED" and at in ("tracking end", "exit"))))
    return {"how": how, "target": target, "offset": offset, "at": at, "said": said, "rc": proc.returncode,
            "disposition": disposition, "signal_s": t_signal - t_launch, "wall_s": t_end - t_launch,
            "records": recs, "parent": status, "traceback": "Traceback" in err, "ok": ok,
            "stderr": err if ok is False else ""}


def typical_length(base_url: str, source: Path | None) -> float:
    """An unsignalled run's wall time: the range of the `time` draws."""
    with tempfile.TemporaryDirectory(prefix="slmbench-ctrl-c-") as tmp:
        t = time.monotonic()
        subprocess.run(sweep_command(base_url, Path(tmp) / "sweep", source, False), capture_output=True, cwd=tmp,
                       env=sweep_env(Path(tmp), source, ""), timeout=600)
        return time.monotonic() - t


def table(results: list[dict]) -> str:
    by = defaultdict(list)
    for r in results:
        by[r["at"]].append(r)
    order = ["before start-up", *PHASES, "exit", "not signalled: the sweep had ended"]
    rows = ["| signal arrived in | runs | exit 130 | other exits | parent run | passed |", "|---|---|---|---|---|---|"]
    for phase in sorted(by, key=lambda p: order.index(p) if p in order else len(order)):
        rs = by[phase]
        other = Counter(r["rc"] for r in rs if r["rc"] != 130)
        parents = Counter(r["parent"] for r in rs)
        rows.append(f"| {phase} | {len(rs)} | {sum(r['rc'] == 130 for r in rs)} | "
                    f"{', '.join(f'{k}: {v}' for k, v in sorted(other.items())) or '-'} | "
                    f"{', '.join(f'{k} {v}' for k, v in sorted(parents.items()))} | {sum(bool(r['ok']) for r in rs)} |")
    signalled = [r for r in results if r["ok"] is not None]
    rows.append(f"| all signalled | {len(signalled)} | {sum(r['rc'] == 130 for r in signalled)} | "
                f"{sum(r['rc'] != 130 for r in signalled)} | | {sum(bool(r['ok']) for r in signalled)} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--at", choices=["mixed", "test", "time", "phase"], default="mixed", help="when to signal")
    p.add_argument("--phases", type=lambda x: x.split(","), default=PHASES[1:],
                   help="with --at phase: the phases to draw from, comma-separated (default: all after start-up)")
    p.add_argument("--offset", type=float, default=0.3,
                   help="with --at phase: half the signals go this far into the phase at most (uniform)")
    p.add_argument("--load", action="store_true", help="keep every core busy with spinning processes")
    p.add_argument("--ignored", action="store_true", help="start each sweep with SIGINT ignored")
    p.add_argument("--minutes", type=float, default=30, help="start no run after this much wall time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parallel", type=int, default=1, help="sweeps at once (each waits on the server most of the time)")
    p.add_argument("--source", type=Path, default=None,
                   help="run `python -m runner.cli` from this source tree (e.g. a worktree of another commit)")
    p.add_argument("--json", type=Path, default=None, help="write every run's facts here")
    a = p.parse_args()
    from scripted_server import Script, ScriptedServer

    rng = random.Random(a.seed)
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(os.cpu_count() if a.load else 0)]
    for s in spinners:
        s.start()
    results: list[dict] = []
    t0 = time.monotonic()
    try:
        with ScriptedServer(Script(ttft_s=0.05, tpot_s=0.01, tokens=20)) as srv:
            typical = typical_length(srv.base_url, a.source) if a.at in ("mixed", "time") else 0.0
            if typical:
                print(f"an unsignalled run: {typical:.1f} s", flush=True)
            lock = threading.Lock()

            def run(i: int, how: str, seed: int) -> None:
                if time.monotonic() - t0 > a.minutes * 60:
                    return
                with tempfile.TemporaryDirectory(prefix="slmbench-ctrl-c-") as tmp:
                    r = one_run(srv.base_url, Path(tmp), how, random.Random(seed), typical, a.source, a.ignored,
                                a.phases, a.offset)
                with lock:
                    results.append(r)
                    print(f"{len(results):4d} {r['how']:5s} {r['at']:22s} rc {r['rc']:4d} SIGINT {r['disposition']:8s} "
                          f"at {r['signal_s']:5.1f} s parent {r['parent']:8s} records {r['records']} "
                          f"{ {True: 'ok', False: 'FAIL', None: 'not signalled'}[r['ok']]}", flush=True)
                    if r["ok"] is False:
                        print("     " + r["stderr"][-1500:].replace("\n", "\n     "), flush=True)

            draws = [(i, rng.choice(["test", "time", "phase"]) if a.at == "mixed" else a.at, rng.randrange(2**32))
                     for i in range(a.runs)]
            with ThreadPoolExecutor(a.parallel) as pool:
                list(pool.map(lambda d: run(*d), draws))
            if len(results) < a.runs:
                print(f"stopped after {len(results)} runs: --minutes {a.minutes:g} spent", flush=True)
    finally:
        for s in spinners:
            s.terminate()
    print()
    print(f"{len(results)} runs in {time.monotonic() - t0:.0f} s{' with every core busy' if a.load else ''}"
          f"{' (sweeps started with SIGINT ignored)' if a.ignored else ''}; load average at the end "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (1, 5, 15 min) on {os.cpu_count()} cores")
    print(table(results))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    sys.exit(0 if results and all(r["ok"] is not False for r in results) else 1)


if __name__ == "__main__":
    main()
