"""Show an episode: a video of real | imagined | goal frames side by side, and a plot of the cost over time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from flowjepa.errors import InvalidInputError
from planning.episode import PlanResult

VIDEO_FORMATS = ("gif", "mp4")
PANEL_LABELS = ("real", "imagined", "goal")
_HEADER_PIXELS = 14
_GAP_PIXELS = 4


def _upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def compose_frame(real: np.ndarray, imagined: np.ndarray | None, goal: np.ndarray, scale: int, step: int) -> np.ndarray:
    """Lay out uint8 frames ``(S, S, 3)`` side by side, upscaled ``scale`` times by pixel repetition, with labels.

    A missing imagined frame is drawn black. Returns ``(14 + S*scale, 3*S*scale + 8, 3)`` uint8.
    """
    side = real.shape[0] * scale
    panels = [real, imagined if imagined is not None else np.zeros_like(real), goal]
    width = 3 * side + 2 * _GAP_PIXELS
    canvas = np.full((_HEADER_PIXELS + side, width, 3), 255, dtype=np.uint8)
    for index, panel in enumerate(panels):
        left = index * (side + _GAP_PIXELS)
        canvas[_HEADER_PIXELS:, left : left + side] = _upscale(panel, scale)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for index, label in enumerate(PANEL_LABELS):
        text = f"{label} t={step}" if index == 0 else label
        draw.text((index * (side + _GAP_PIXELS) + 2, 1), text, fill=(0, 0, 0))
    return np.asarray(image)


def video_scale(size: int, minimum_side: int = 128) -> int:
    """Return the integer upscale factor that makes a ``size`` px frame at least ``minimum_side`` px."""
    return max(1, -(-minimum_side // size))


def write_episode_video(result: PlanResult, path: str | Path, fps: float = 10.0) -> Path:
    """Write the episode as a GIF or MP4 (chosen by the suffix of ``path``) and return the path.

    MP4 needs the ``imageio-ffmpeg`` package; GIF always works.
    """
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in VIDEO_FORMATS:
        raise InvalidInputError(f"video path {path} must end in .gif or .mp4")
    if kind == "mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise InvalidInputError("writing MP4 needs the imageio-ffmpeg package, which is not installed; use GIF")
    import imageio.v3 as iio

    scale = video_scale(result.goal_frame.shape[0])
    frames = []
    for step, real in enumerate(result.real_frames):
        imagined = result.imagined_frames[step] if step < len(result.imagined_frames) else None
        frames.append(compose_frame(real, imagined, result.goal_frame, scale, step))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    if kind == "gif":
        iio.imwrite(temporary, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
    else:
        iio.imwrite(temporary, np.stack(frames), extension=".mp4", fps=fps)
    temporary.replace(path)
    return path


def plot_episode_costs(result: PlanResult, path: str | Path, title: str = "") -> Path:
    """Plot planner cost and latent distance per step (and the state errors when known) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if result.state_errors is not None else 1
    figure, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.5), squeeze=False)
    axis = axes[0, 0]
    steps = np.arange(len(result.latent_distances))
    axis.plot(steps[1:], result.costs, label="planner cost (best plan)")
    axis.plot(steps, result.latent_distances, label="latent distance to goal (RMS, stds)")
    axis.set_xlabel("step")
    axis.legend(fontsize=8)
    if result.state_errors is not None:
        axis = axes[0, 1]
        for column, name in enumerate(result.state_error_names):
            axis.plot(steps, result.state_errors[:, column], label=f"|{name} - goal|")
        axis.set_xlabel("step")
        verdict = {True: "yes", False: "no", None: "unknown"}[result.success]
        axis.set_title(f"success: {verdict}", fontsize=9)
        axis.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    temporary.replace(path)
    return path
