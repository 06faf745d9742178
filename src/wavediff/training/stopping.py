"""Stopping a training run on a signal without losing its work.

Ctrl-C (SIGINT) and SIGTERM (what `timeout`, Slurm, `docker stop` and `kill` send) both stop a run. One signal
that arrives during an iteration lets the iteration finish, so the run stops at a whole step and can save its
state there; a second signal stops it at once. A signal that arrives between iterations (while the next batch
loads) stops it at once, also at a whole step. Several processes (torchrun) stop at once: they could not agree on
a step to save without talking to each other, and a peer may already be gone.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class Stopped(KeyboardInterrupt):
    """Raised in the training loop by `GracefulStop`'s handler (a KeyboardInterrupt, so every existing Ctrl-C
    path handles it)."""

    def __init__(self, signum: int):
        super().__init__(SIGNAL_NAMES.get(signum, f"signal {signum}"))
        self.signum = signum


class GracefulStop:
    """While entered (in the main thread), SIGINT and SIGTERM raise `Stopped`, deferred to the end of the current
    `iteration()` when `defer` is set. Signals ignored when it is entered (`nohup`, a shell's background job) stay
    ignored; the previous handlers come back on exit."""

    def __init__(self, defer: bool):
        self.defer = defer
        self.busy = False  # inside an iteration; still True after one that raised: the step was not whole
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNAL_NAMES:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.defer and self.busy and self.signum is None:
            self.signum = signum
            print(
                f"\n{SIGNAL_NAMES[signum]}: stopping after this step to save the run (again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
            return
        self.signum = self.signum or signum
        raise Stopped(self.signum)

    @property
    def at_whole_step(self) -> bool:
        """Whether the run stopped between iterations (its weights, optimisers and counters agree)."""
        return not self.busy

    @contextmanager
    def iteration(self):
        """Wrap one training iteration: a signal received inside stops the run after it."""
        self.busy = True
        yield
        self.busy = False  # not reached when the iteration raised
        if self.signum is not None:
            raise Stopped(self.signum)
