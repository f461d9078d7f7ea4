"""Hydra callback: after a multirun, write the sweep's report from its jobs' summaries."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner.report import write_sweep_report


class SweepReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        out = write_sweep_report(Path(config.hydra.sweep.dir))
        if out is not None:
            print(f"sweep report: {out}", file=sys.stderr)
