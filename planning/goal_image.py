"""Goal images for ``flowjepa plan``: which files are accepted and how they become the model's input.

Conversion rule (also printed by ``flowjepa plan --help``):

- Formats: PNG or JPEG. Anything else is rejected.
- Size guard: images over 16,777,216 pixels (4096 x 4096) are rejected before
  their pixels are decoded.
- Colour: RGB is used as is. RGBA, RGBX, palette (P) and YCbCr images are
  converted to RGB; an alpha channel must be fully opaque, because a
  transparent pixel has no colour to compare. Greyscale (1, L, LA, I, I;16, F)
  and CMYK images are rejected: the encoder was trained on RGB frames.
- Geometry: a JPEG's EXIF orientation is applied. The image must be square
  within 1%, so the longer side is at most 1.01 times the shorter. It is then
  resized to the model's size with Lanczos filtering. Other aspect ratios are
  rejected, because resizing would distort the scene and cropping could cut
  the cart out. Images whose side is under a quarter of the model's size are
  rejected too: upscaling them more than 4 times cannot restore the scene.
- Metadata: a PNG written by ``flowjepa goal`` carries its environment and
  physical state, which lets ``plan`` report the true state distance and success.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from flowjepa.errors import InvalidInputError

logger = logging.getLogger(__name__)

MAX_GOAL_PIXELS = 4096 * 4096
ACCEPTED_FORMATS = ("PNG", "JPEG")
GREYSCALE_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
CONVERTED_MODES = ("RGBA", "RGBa", "RGBX", "P", "PA", "YCbCr")
MAX_ASPECT = 1.01
MAX_UPSCALE = 4
_EXIF_ORIENTATION = 0x0112

CONVERSION_RULE = (
    "PNG or JPEG up to 4096x4096 px. RGB is used as is; RGBA, palette and YCbCr images are converted to RGB "
    "(alpha must be fully opaque); greyscale and CMYK are rejected. The image must be square within 1%, at least a "
    "quarter of the model's size, and is resized to the model's size with Lanczos filtering."
)


@dataclass
class GoalImage:
    """A goal frame ready for the encoder, with the metadata stored in its file."""

    frame: np.ndarray
    """uint8 ``(size, size, 3)``."""
    state: np.ndarray | None
    """Physical state stored in the PNG metadata, or None."""
    env: str | None
    """Environment stored in the PNG metadata, or None."""
    state_names: tuple[str, ...] | None
    conversions: list[str] = field(default_factory=list)
    """Conversions applied, in words, for the log."""


def _open_checked(path: Path) -> Image.Image:
    """Open ``path`` lazily and check format and pixel count before anything is decoded."""
    if not path.is_file():
        raise InvalidInputError(
            f"goal image not found: {path}; render one from a target state, e.g. "
            f"`flowjepa goal --env cartpole --cart-position 0.5 --pole-angle 0 --out {path}` "
            "(see `flowjepa goal --help` for other envs and states)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidInputError(
            f"goal image {path} is too large to decode safely ({error}); use an image of at most 4096x4096 px"
        ) from error
    except (UnidentifiedImageError, OSError) as error:
        raise InvalidInputError(
            f"goal image {path} cannot be read as an image ({error}); pass a PNG or JPEG"
        ) from error
    if image.format not in ACCEPTED_FORMATS:
        found = image.format
        image.close()
        raise InvalidInputError(f"goal image {path} is {found}; pass a PNG or JPEG file")
    width, height = image.size
    if width * height > MAX_GOAL_PIXELS:
        image.close()
        raise InvalidInputError(
            f"goal image {path} is {width}x{height} px, over the limit of 4096x4096 px; downscale it first"
        )
    return image


def _to_rgb(image: Image.Image, path: Path, conversions: list[str]) -> Image.Image:
    mode = image.mode
    if mode in GREYSCALE_MODES:
        raise InvalidInputError(
            f"goal image {path} is greyscale (PIL mode {mode}), but the encoder was trained on RGB frames; "
            "pass an RGB image"
        )
    if mode == "CMYK":
        raise InvalidInputError(f"goal image {path} is CMYK; convert it to RGB (sRGB) first")
    if mode == "RGB":
        return image
    if mode not in CONVERTED_MODES:
        raise InvalidInputError(f"goal image {path} has the unsupported PIL mode {mode}; pass an 8-bit RGB image")
    if mode in ("P", "PA") or "A" in mode or mode == "RGBa":
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3]
        if alpha.min() < 255:
            transparent = int((alpha < 255).sum())
            raise InvalidInputError(
                f"goal image {path} has {transparent} transparent pixel(s); a transparent pixel has no colour to "
                "compare: flatten it onto an opaque background first"
            )
        conversions.append(f"{mode} -> RGB (alpha fully opaque, dropped)")
        return rgba.convert("RGB")
    conversions.append(f"{mode} -> RGB")
    return image.convert("RGB")


def _to_size(image: Image.Image, size: int, path: Path, conversions: list[str]) -> Image.Image:
    width, height = image.size
    if (width, height) == (size, size):
        return image
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InvalidInputError(
            f"goal image {path} is {width}x{height} px but the model needs a square {size}x{size} image; "
            "crop it to a square around the scene first (resizing it would distort the scene)"
        )
    if MAX_UPSCALE * min(width, height) < size:
        raise InvalidInputError(
            f"goal image {path} is {width}x{height} px, too small for the model's {size}x{size} input "
            f"(at most {MAX_UPSCALE}x upscaling); render it with `flowjepa goal --size {size}` or pass a larger image"
        )
    conversions.append(f"resized {width}x{height} -> {size}x{size} (Lanczos)")
    return image.resize((size, size), Image.Resampling.LANCZOS)


def check_goal_image(path: str | Path) -> None:
    """Raise ``InvalidInputError`` when ``path`` is missing, not a PNG or JPEG, or too large (pixels stay undecoded)."""
    _open_checked(Path(path)).close()


def load_goal_image(path: str | Path, size: int) -> GoalImage:
    """Read a goal image and convert it to a uint8 ``(size, size, 3)`` frame with the module's rule."""
    path = Path(path)
    original = _open_checked(path)
    file_format = original.format
    conversions: list[str] = []
    try:
        image = original
        if file_format == "JPEG" and original.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(original)
            conversions.append("EXIF orientation applied")
        try:
            image.load()
        except OSError as error:
            raise InvalidInputError(
                f"goal image {path} could not be decoded ({error}); the file may be truncated or damaged: "
                "re-export it, or render a new one with `flowjepa goal`"
            ) from error
        rgb = _to_size(_to_rgb(image, path, conversions), size, path, conversions)
        frame = np.array(rgb, dtype=np.uint8)
    finally:
        original.close()

    state, env, names = None, None, None
    if file_format == "PNG":
        from envs.goal import read_goal_png

        _, metadata = read_goal_png(path)
        state, env, names = metadata["state"], metadata["env"], metadata["state_names"]
    for conversion in conversions:
        logger.info("goal image %s: %s", path, conversion)
    return GoalImage(frame=frame, state=state, env=env, state_names=names, conversions=conversions)
