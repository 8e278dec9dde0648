"""Facts about the run that every section of the page repeats: hardware, threads, load and git commit."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or what :mod:`platform` reports elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Return the number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def hardware_line() -> str:
    """Return one line naming the CPU, the cores, the torch build and its thread count."""
    return (
        f"{cpu_model()}, {usable_cores()} usable cores of {os.cpu_count()}, "
        f"torch {torch.__version__} with {torch.get_num_threads()} intra-op thread(s), "
        f"Python {platform.python_version()}"
    )


def load_average() -> float | None:
    """Return the 1-minute load average (runnable processes), or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def git_commit(repo: Path = REPO_ROOT) -> str:
    """Return the short commit of ``repo``, marked when files differ from it, or ``unknown`` outside git.

    Uses only read-only git commands; ``--no-optional-locks`` keeps ``git status`` from refreshing the index.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit} with uncommitted changes" if status else commit
