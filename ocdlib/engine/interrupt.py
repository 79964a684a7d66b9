"""A clean stop on SIGTERM or SIGINT: what a cluster scheduler sends before preemption,
and Ctrl-C.

While a run trains, `StopRequest` turns the first signal into a request that the
training loop honours at the next step boundary: it saves a checkpoint that resumes
exactly mid-epoch, says how to resume, and raises `RunInterrupted` (exit status
128 + the signal's number, as a shell reports a process killed by it). A second
Ctrl-C while the run is saving raises KeyboardInterrupt at once. The handlers are
installed from the main thread only, and the previous ones restored afterwards.
"""

from __future__ import annotations

import signal
import threading

from ..errors import RunInterrupted

__all__ = ["RunInterrupted", "StopRequest"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Context manager: `signum` is the first stop signal received while it is active."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
