"""Judge modes by registry: `judge.mode` names one, and the mode declares what it needs and how
its judge is built, so no grading code asks which mode it is.

A mode is registered with `register(Mode(...))`; the scorers have their own registry
(judges/scorers.py, `@scorer`). A new mode is a module with a judge class (`grade(prompt, answer)
-> Grade`) and one `register` call here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from judges import checklist, rubric
from runner.config.errors import UserError


@dataclass(frozen=True)
class Mode:
    name: str
    # (judge config, backend, temperature, seed) -> a judge with grade(prompt, answer) -> Grade
    build: Callable
    # the code that builds its requests: part of a qualification's cache key (a changed prompt
    # is a different grader)
    modules: tuple[ModuleType, ...]
    needs_reference_items: bool = False  # its questions come from each prompt's reference_items
    settings: tuple[str, ...] = ()  # judge.* keys beyond the common ones that change its grades


MODES: dict[str, Mode] = {}


def register(mode: Mode) -> Mode:
    if mode.name in MODES:
        raise ValueError(f"judge mode {mode.name!r} is registered twice")
    MODES[mode.name] = mode
    return mode


def get(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise UserError(f"judge.mode={name!r} is not a judge mode (known: {', '.join(sorted(MODES))})") from None


# The default mode (runner/config/plan.py: DEFAULT_JUDGE_MODE): its graders are named by the model alone.
register(Mode(
    "rubric", modules=(rubric,),
    build=lambda cfg, backend, temperature, seed: rubric.RubricJudge(
        backend, cfg.model, cfg.max_tokens, seed, temperature, cfg.retries, cfg.structured)))

register(Mode(
    "checklist", needs_reference_items=True, modules=(rubric, checklist), settings=("reasoning",),
    # one verdict per reference item: a longer reply than a rubric's
    build=lambda cfg, backend, temperature, seed: checklist.ChecklistJudge(
        backend, cfg.model, cfg.max_tokens * 2, seed, temperature, cfg.retries, cfg.structured,
        cfg.reasoning)))
