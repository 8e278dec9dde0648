"""Rendering back-end selection: clear errors for invalid, mismatched or missing OpenGL back-ends."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import envs
from cli.main import app
from envs import rendering
from envs.rendering import RenderingBackendError, configure_rendering


def test_configure_sets_headless_variables():
    backend = configure_rendering()
    assert backend in rendering.AUTO_BACKENDS or backend == os.environ.get("MUJOCO_GL")
    assert os.environ["MUJOCO_GL"] == backend
    assert os.environ["SDL_VIDEODRIVER"]


def test_invalid_mujoco_gl_names_variable_and_fix(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "no-such-backend")
    with pytest.raises(RenderingBackendError) as error:
        envs.make("cartpole", size=16)
    message = str(error.value)
    assert "MUJOCO_GL='no-such-backend'" in message
    assert "egl" in message
    assert "osmesa" in message


def test_disabled_mujoco_gl_is_rejected(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "off")
    with pytest.raises(RenderingBackendError, match="disables rendering"):
        configure_rendering()


def test_mismatched_pyopengl_platform_is_one_message(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")
    monkeypatch.setenv("PYOPENGL_PLATFORM", "osmesa")
    with pytest.raises(RenderingBackendError) as error:
        configure_rendering()
    message = str(error.value)
    assert "MUJOCO_GL='egl'" in message
    assert "PYOPENGL_PLATFORM='osmesa'" in message


def test_no_loadable_backend_lists_backends_tried_and_packages():
    # Both names fail inside the probe subprocess, as a missing library would.
    with pytest.raises(RenderingBackendError) as error:
        rendering._select_backend(("egl-missing", "osmesa-missing"), None)
    message = str(error.value)
    assert "MUJOCO_GL=egl-missing" in message
    assert "MUJOCO_GL=osmesa-missing" in message
    assert "install" in message


def test_probe_reports_the_failure_line():
    error = rendering._probe_backend("no-such-backend")
    assert error is not None
    assert "MUJOCO_GL" in error


def test_cli_reports_backend_error_without_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("MUJOCO_GL", "no-such-backend")
    result = CliRunner().invoke(
        app, ["collect", "--env", "cartpole", "--episodes", "1", "--steps", "2", "--out", str(tmp_path / "data")]
    )
    assert result.exit_code == 2
    assert "MUJOCO_GL" in result.output
    assert "Traceback" not in result.output


def test_dm_control_imported_first_is_reported():
    # dm_control fixes its back-end at import. Imported before MUJOCO_GL is set, it picks
    # glfw (or nothing) on a headless machine, and make() must report that.
    env = {key: value for key, value in os.environ.items() if key not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    env.pop("FLOWJEPA_MUJOCO_GL_VERIFIED", None)
    code = (
        "import dm_control._render\n"
        "print('LOADED', dm_control._render.BACKEND)\n"
        "import envs\n"
        "try:\n"
        "    envs.make('cartpole', size=16)\n"
        "except envs.RenderingBackendError as error:\n"
        "    print('ERROR', error)\n"
        "else:\n"
        "    print('OK')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=os.getcwd()
    )
    assert result.returncode == 0, result.stderr
    if "LOADED egl" in result.stdout:
        # Without a glfw library dm_control falls back to egl, which is what flowjepa picks too.
        assert "OK" in result.stdout
    else:
        assert "before importing dm_control" in result.stdout
