"""A stop that reaches every run: SIGTERM or Ctrl-C to `reproduce` stops the runs it
trains side by side, each saved at its next step, before the command exits.

A Ctrl-C in a terminal reaches the whole process group, but a SIGTERM (a scheduler's
preemption, `kill PID`) reaches only the command: without forwarding, its training
processes would go on as orphans holding their run folders. `ForwardStops` forwards
the first signal to every process of the pool as SIGTERM; each run's own handler
(ocdlib/engine/interrupt.py) saves it at the next step. The command then waits for
them and raises `RunInterrupted` with the line that resumes the lot.
"""

from __future__ import annotations

import os
import signal
import threading

from ..errors import RunInterrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ForwardStops:
    """Context manager around a ProcessPoolExecutor's use: forwards stop signals to its
    processes; `check()` raises RunInterrupted once one arrived."""

    def __init__(self, pool, command: str = "the same command"):
        self.pool = pool
        self.command = command
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum
        for process in list(getattr(self.pool, "_processes", {}).values()):
            try:
                os.kill(process.pid, signal.SIGTERM)
            except (ProcessLookupError, OSError):
                pass

    def __enter__(self) -> ForwardStops:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def interrupted(self) -> RunInterrupted:
        name = signal.Signals(self.signum).name if self.signum else "a signal"
        return RunInterrupted(
            f"reproduce stopped on {name}: its training runs were saved at their next step; "
            f"{self.command} resumes them",
            self.signum or signal.SIGTERM,
        )
