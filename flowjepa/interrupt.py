"""Graceful stops for long runs: SIGINT and SIGTERM end the current step, then a checkpoint is written."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint was written at ``step``."""

    def __init__(self, step: int, run_dir: Path, signal_name: str) -> None:
        super().__init__(f"{signal_name} received: checkpoint saved at step {step} in {run_dir}")
        self.step, self.run_dir, self.signal_name = step, run_dir, signal_name


@contextlib.contextmanager
def stop_signals() -> Iterator[dict[str, str | None]]:
    """Record SIGINT/SIGTERM in the yielded dict under ``received`` instead of dying mid-step.

    Outside the main thread, where Python cannot install signal handlers, the dict stays empty.
    """
    flag: dict[str, str | None] = {"received": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handle(signum: int, _frame: Any) -> None:
        flag["received"] = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
