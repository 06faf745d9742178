"""Run records: RUN_DIR/log.jsonl (one JSON object per line), a tqdm bar, TensorBoard when installed.

Only rank 0 creates a `RunLog` that writes; the others get a silent one.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

_clock = time.perf_counter  # wall-time source of the budget bar (tests replace it)
# seconds between the bar's lines when stderr is not a terminal (a log file: nohup, a cluster job)
LOG_INTERVAL_S = 30.0


class _Lines:
    """A stream for the bar when stderr is not a terminal: each redraw becomes one line of its own, instead of a
    carriage-return redraw that a log file keeps as an ever longer line; blank clearing redraws are dropped."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _bar_output() -> dict:
    """tqdm's stream and refresh interval: a live bar on a terminal, a line every `LOG_INTERVAL_S` otherwise."""
    if sys.stderr.isatty():
        return {"mininterval": 1.0}
    return {"file": _Lines(sys.stderr), "mininterval": LOG_INTERVAL_S, "maxinterval": LOG_INTERVAL_S}


class RunLog:
    """`time_budget_s` > 0 (a run limited by `train.max_minutes`): the bar counts wall time
    against the budget, with the step in its postfix, instead of steps against a step
    target the budget will never reach."""

    def __init__(self, run_dir: Path | None, total_steps: int, initial_step: int, time_budget_s: float = 0.0):
        self.enabled = run_dir is not None
        self._file = open(run_dir / "log.jsonl", "a", encoding="utf-8") if run_dir is not None else None
        self._tb = _tensorboard(run_dir / "tensorboard") if run_dir is not None else None
        self._budget, self._step, self._postfix = float(time_budget_s), initial_step, {}
        self._last = _clock()
        if self._budget > 0:
            fmt = f"{{percentage:3.0f}}%|{{bar}}| {{elapsed}} of {self._budget / 60:g} min{{postfix}}"
            self.bar = tqdm(
                total=self._budget, bar_format=fmt, dynamic_ncols=True, disable=not self.enabled, **_bar_output()
            )
        else:
            self.bar = tqdm(
                total=total_steps,
                initial=initial_step,
                unit="step",
                dynamic_ncols=True,
                disable=not self.enabled,
                **_bar_output(),
            )

    def event(self, event: str, **fields) -> None:
        """Append one record `{"event": event, "time": ..., **fields}`."""
        if self._file is None:
            return
        try:
            self._file.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}) + "\n")
            self._file.flush()
        except OSError as e:
            from ..errors import OutputError
            from ..outputs import os_error_reason

            what, fix = os_error_reason(e)
            raise OutputError(f"cannot append to {self._file.name}: {what}; {fix}") from None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """A `train` record, the bar's postfix and TensorBoard scalars."""
        if not self.enabled:
            return
        self.event("train", step=step, **values)
        shown = {k: values[k] for k in ("loss_d", "loss_g", "images_per_s") if k in values}
        self._postfix = {k: f"{v:.3g}" for k, v in shown.items()}
        self._show_postfix()
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"train/{k}", v, step)

    def tb_scalars(self, prefix: str, step: int, values: dict[str, float]) -> None:
        """TensorBoard scalars `prefix/name` (when TensorBoard is installed)."""
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{prefix}/{k}", v, step)

    def advance(self, steps: int = 1) -> None:
        self._step += steps
        if self._budget <= 0:
            self.bar.update(steps)
            return
        now = _clock()
        self.bar.update(min(now - self._last, self._budget - self.bar.n))
        self._last = now
        if self._step % 25 == 0:
            self._show_postfix()

    def _show_postfix(self) -> None:
        extra = {"step": self._step} if self._budget > 0 else {}
        self.bar.set_postfix({**extra, **self._postfix}, refresh=False)

    def write(self, line: str) -> None:
        """A message printed above the bar (stdout)."""
        if self.enabled:
            self.bar.write(line)

    def close(self) -> None:
        self.bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._file is not None:
            self._file.close()


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional dependency: pip install wavediff[tensorboard]
        return None
    return SummaryWriter(str(folder))
