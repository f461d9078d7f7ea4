"""Ctrl-C in `slmbench run`, and the phase the process is in.

A SIGINT stops the run with exit 130 (128 + SIGINT, the shell's code for it): the records are
whole lines already, and the sweep's MLflow parent run is marked KILLED on the way out
(runner/track/tracking.py). The first SIGINT raises KeyboardInterrupt where the main thread is,
and is remembered: one swallowed on its way up (raised inside a finalizer, where Python only
prints it, or caught by a library) is raised again at the next phase boundary, and the exit code
is 130 whatever became of it. A call into the MLflow store is never cut in two: the signal is
taken as it returns (deferred(), runner/track/retry.py). A second SIGINT, during that clean-up, or
one after the work is done, ends the process at once; and the process ends itself (os._exit) once
its exit handlers have run, before Python's teardown sets SIGINT back to its default.

A process started with SIGINT ignored (a background job of a shell script without job control:
its shell asked for that) keeps ignoring it, as every Python program does.

Each phase is named in the interrupted line. With SLMBENCH_PHASES=1 each is also stamped on
stderr as it starts (`slmbench: phase NAME UNIX_TIME PID`), for benchmarks/ctrl_c.py and the
tests; SLMBENCH_PHASES=stop:NAME also stops the process (SIGSTOP) as it enters NAME, so a test
can signal it inside that phase deterministically and then let it go on (SIGCONT)."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import time

EXIT = 130
STARTUP, EXITING = "start-up", "exit"

_phase = STARTUP
_signals = 0
_signalled_in: str | None = None  # the phase the first SIGINT arrived in
_deferring = 0
_code: int | None = None  # the exit code, once decided
_trace = os.environ.get("SLMBENCH_PHASES", "")
_stop_at = _trace.removeprefix("stop:") if _trace.startswith("stop:") else None
# Job processes started by this one (runner/measure/job.py run_isolated): killed on a hard exit.
CHILDREN: set[int] = set()


def phase() -> str:
    return _phase


def interrupted() -> str | None:
    """The phase the first SIGINT arrived in, or None."""
    return _signalled_in


def install() -> bool:
    """Take over SIGINT in the main thread (not when it was ignored at start: see above)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return False
    signal.signal(signal.SIGINT, _on_sigint)
    atexit.register(_end)  # registered before the run's own exit handlers: runs after them
    return True


def enter(name: str) -> None:
    """The start of a phase: a Ctrl-C whose KeyboardInterrupt was swallowed is raised again here."""
    global _phase
    _phase = name
    _stamp(name)
    if _signals:
        raise KeyboardInterrupt


def leave(code: int | None) -> None:
    """The work is done (or given up) and `code` is the exit code (None: an unexpected error, which
    Python reports). From here a SIGINT ends the process at once: in an exit handler, or while
    threads are joined, a KeyboardInterrupt would only be printed, and the exit code kept."""
    global _phase, _code
    _phase, _code = EXITING, code
    _stamp(EXITING)


def _stamp(name: str) -> None:
    if _trace:
        sys.stderr.write(f"slmbench: phase {name} {time.time():.6f} {os.getpid()}\n")
        sys.stderr.flush()
        if name == _stop_at:
            os.kill(os.getpid(), signal.SIGSTOP)


@contextlib.contextmanager
def deferred():
    """A step a KeyboardInterrupt must not cut in two (a call into the MLflow store; creating the
    sweep's parent run and registering its clean-up): a first SIGINT within it is raised as it
    ends, in place of anything the step raised (a retry must not start)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if _signals and not _deferring:
            raise KeyboardInterrupt


def _end() -> None:
    """The last exit handler: the process ends here, with its code. Python's own teardown, which
    would follow, puts SIGINT back to its default first: a Ctrl-C then killed the process (-2, not
    130), and tearing down MLflow's and NumPy's modules only costs time."""
    if _code is None:
        return
    _stamp("end")  # a signal after this stamp comes too late for any process: it is ending
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(EXIT if _signals else _code)


def _on_sigint(signum, frame) -> None:
    global _signals, _signalled_in
    _signals += 1
    if _signals > 1 or _phase == EXITING:
        hard_exit()
    _signalled_in = _phase
    if not _deferring:
        raise KeyboardInterrupt


def hard_exit() -> None:
    """Exit 130 now: no clean-up (the records are whole lines; an MLflow parent run may stay RUNNING)."""
    for pid in list(CHILDREN):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):  # os.write: the handler may run inside a print to stderr
        os.write(2, b"slmbench: interrupted: stopped at once, without clean-up\n")
    os._exit(EXIT)
