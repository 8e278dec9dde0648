"""Headless rendering set-up: choose ``MUJOCO_GL`` and ``SDL_VIDEODRIVER`` before anything renders.

dm_control reads ``MUJOCO_GL`` once, when ``dm_control`` is first imported, so
the backend must be chosen before that import. A backend that fails to load
can leave the process unable to render at all, so each candidate is tried in a
short-lived subprocess that imports dm_control and renders an 8x8 image. The
result is cached per process, and the verified value is exported in
``FLOWJEPA_MUJOCO_GL_VERIFIED`` so that child processes skip the probe.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from flowjepa.errors import InvalidInputError

logger = logging.getLogger(__name__)

# Offscreen backends in the order they are tried when MUJOCO_GL is unset.
AUTO_BACKENDS = ("egl", "osmesa")

# Spellings dm_control 1.0.x accepts for MUJOCO_GL, mapped to the canonical name.
_BACKEND_ALIASES = {
    "egl": "egl",
    "osmesa": "osmesa",
    "glfw": "glfw",
    "on": "glfw",
    "enable": "glfw",
    "enabled": "glfw",
    "true": "glfw",
    "1": "glfw",
    "": "glfw",
    "off": "disabled",
    "disable": "disabled",
    "disabled": "disabled",
    "false": "disabled",
    "0": "disabled",
}

# Debian/Ubuntu packages that provide each backend's native library.
_BACKEND_PACKAGES = {
    "egl": "libegl1 libegl-mesa0 libgl1-mesa-dri",
    "osmesa": "libosmesa6",
    "glfw": "libglfw3 and a running X display",
}

_VERIFIED_VARIABLE = "FLOWJEPA_MUJOCO_GL_VERIFIED"
_PROBE_TIMEOUT_S = 60.0

_PROBE_CODE = """
from dm_control import mujoco
physics = mujoco.Physics.from_xml_string(
    "<mujoco><worldbody><light pos='0 0 3'/><geom type='sphere' size='.5'/></worldbody></mujoco>"
)
image = physics.render(8, 8)
physics.free()
assert image.shape == (8, 8, 3), f"the probe rendered an image of shape {image.shape}"
assert image.std() > 0, "the probe rendered a blank image"
"""

# (MUJOCO_GL, PYOPENGL_PLATFORM) as found -> backend that was verified for that pair.
_verified: dict[tuple[str | None, str | None], str] = {}


class RenderingBackendError(InvalidInputError):
    """No OpenGL backend could render MuJoCo scenes; the message names the variables, backends and packages."""


def configure_rendering(mujoco: bool = True) -> str | None:
    """Set the environment variables for headless rendering and return the MuJoCo backend in use.

    ``SDL_VIDEODRIVER=dummy`` (pygame) is set unless the user set it. With
    ``mujoco=True`` a user-set ``MUJOCO_GL`` is validated and probed, and an
    unset one is chosen among ``egl`` and ``osmesa`` (first that renders), with
    ``PYOPENGL_PLATFORM`` set to match. Call it before importing dm_control;
    :func:`envs.make` calls it for you.

    Raises:
        RenderingBackendError: the backend is invalid, mismatches ``PYOPENGL_PLATFORM``,
            cannot render, or dm_control was already imported with another backend.
    """
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    if not mujoco:
        return None

    # Triton, which torch.optim imports lazily on the first optimiser step, segfaults when it is first
    # loaded after MuJoCo's EGL context exists (seen with torch 2.14.1, mujoco 4.0.1 and Mesa EGL).
    # Importing it before any rendering avoids that.
    import torch._dynamo  # noqa: F401

    key = (os.environ.get("MUJOCO_GL"), os.environ.get("PYOPENGL_PLATFORM"))
    backend = _verified.get(key)
    if backend is None:
        backend = _choose_mujoco_backend(*key)
        _verified[key] = backend
        _verified[(os.environ.get("MUJOCO_GL"), os.environ.get("PYOPENGL_PLATFORM"))] = backend

    _check_dm_control_backend(backend)
    return backend


def _choose_mujoco_backend(requested: str | None, pyopengl: str | None) -> str:
    if requested is None:
        return _select_backend(AUTO_BACKENDS, pyopengl)

    backend = _BACKEND_ALIASES.get(requested.strip().lower())
    if backend is None:
        raise RenderingBackendError(
            f"MUJOCO_GL={requested!r} is not a MuJoCo rendering backend; "
            f"set MUJOCO_GL to one of {', '.join(AUTO_BACKENDS)} (or glfw with a display), "
            "or unset it so flowjepa tries egl, then osmesa"
        )
    if backend == "disabled":
        raise RenderingBackendError(
            f"MUJOCO_GL={requested!r} disables rendering, but flowjepa environments render every frame; "
            f"set MUJOCO_GL to one of {', '.join(AUTO_BACKENDS)} or unset it"
        )
    _check_pyopengl_pair(backend, requested, pyopengl)

    if os.environ.get(_VERIFIED_VARIABLE) == backend:
        return backend
    error = _probe_backend(backend)
    if error is not None:
        raise RenderingBackendError(
            f"MUJOCO_GL={requested!r} is set, but MuJoCo cannot render with it ({error}); "
            f"install {_BACKEND_PACKAGES[backend]} (Debian/Ubuntu package names), "
            "or unset MUJOCO_GL so flowjepa tries egl, then osmesa"
        )
    os.environ[_VERIFIED_VARIABLE] = backend
    return backend


def _check_pyopengl_pair(backend: str, requested: str, pyopengl: str | None) -> None:
    # dm_control's EGL and OSMesa renderers load PyOpenGL for the platform named in
    # PYOPENGL_PLATFORM, so the two variables must agree.
    if backend in AUTO_BACKENDS and pyopengl and pyopengl.strip().lower() != backend:
        raise RenderingBackendError(
            f"MUJOCO_GL={requested!r} and PYOPENGL_PLATFORM={pyopengl!r} do not match; "
            f"set PYOPENGL_PLATFORM={backend} or unset it (flowjepa then sets it to match)"
        )


def _select_backend(candidates: tuple[str, ...], pyopengl: str | None) -> str:
    """Probe ``candidates`` in order, export the first that renders and return it."""
    allowed = [name for name in candidates if not pyopengl or pyopengl.strip().lower() == name]
    if not allowed:
        raise RenderingBackendError(
            f"PYOPENGL_PLATFORM={pyopengl!r} matches none of the MuJoCo backends flowjepa can use "
            f"({', '.join(candidates)}); unset PYOPENGL_PLATFORM or set it together with MUJOCO_GL"
        )

    failures = []
    for name in allowed:
        if os.environ.get(_VERIFIED_VARIABLE) == name:
            error = None
        else:
            error = _probe_backend(name)
        if error is None:
            os.environ["MUJOCO_GL"] = name
            os.environ.setdefault("PYOPENGL_PLATFORM", name)
            os.environ[_VERIFIED_VARIABLE] = name
            logger.debug("rendering MuJoCo scenes with MUJOCO_GL=%s", name)
            return name
        failures.append(f"MUJOCO_GL={name}: {error}")

    packages = "; ".join(f"{name}: {_BACKEND_PACKAGES.get(name, 'unknown')}" for name in allowed)
    raise RenderingBackendError(
        f"no OpenGL backend can render MuJoCo scenes (MUJOCO_GL is unset; tried {'; '.join(failures)}); "
        f"install the library of one backend (Debian/Ubuntu packages {packages}) "
        "or set MUJOCO_GL to a backend that works on this machine"
    )


def _probe_backend(backend: str) -> str | None:
    """Render a tiny scene with ``backend`` in a subprocess; return ``None`` on success or the error line."""
    env = dict(os.environ, MUJOCO_GL=backend)
    if backend in AUTO_BACKENDS:
        env["PYOPENGL_PLATFORM"] = backend
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE_CODE],
            env=env,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return f"the probe timed out after {_PROBE_TIMEOUT_S:.0f} s"
    if result.returncode == 0:
        return None
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"the probe exited with code {result.returncode}"


def _check_dm_control_backend(backend: str) -> None:
    # dm_control fixes its backend at import; an import before configure_rendering()
    # may have picked glfw (or nothing), and every render would then fail deep inside MuJoCo.
    render_module = sys.modules.get("dm_control._render")
    if render_module is None:
        return
    loaded = getattr(render_module, "BACKEND", None)
    if loaded != backend:
        raise RenderingBackendError(
            f"dm_control was imported with rendering backend {loaded!r} before MUJOCO_GL was set to {backend!r}; "
            "call envs.configure_rendering() (or import envs and make the environment) before importing "
            f"dm_control, or export MUJOCO_GL={backend} before starting Python"
        )
