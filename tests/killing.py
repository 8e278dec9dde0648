"""Kill a training subprocess with SIGKILL once its checkpoint reaches a given step."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from flowjepa import InvalidInputError
from flowjepa.checkpoint import load_state


def kill_at_checkpoint(process: subprocess.Popen, checkpoint: Path, step: int, timeout: float = 240.0) -> int:
    """Poll `checkpoint` until its step is at least `step`, then SIGKILL `process`.

    Returns the step stored in the checkpoint the killed process left behind. Fails the test if the
    process ends on its own first, so callers must give it more steps than it can run between polls.
    """
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                if checkpoint.is_file() and load_state(checkpoint)["step"] >= step:
                    break
            except InvalidInputError:
                pass  # read while the file was being replaced; read it again
            if process.poll() is not None:
                pytest.fail(f"the run ended before it could be killed: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    return int(load_state(checkpoint)["step"])
