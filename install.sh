#!/usr/bin/env bash
# Install flowjepa into ./.venv, with the system libraries MuJoCo needs to render headless.
#
#   ./install.sh            # Debian/Ubuntu; runs apt-get when the OpenGL libraries are missing
#
# torch and torchvision are pinned to 2.14.1 / 0.29.1; set FLOWJEPA_TORCH_SPEC to install others,
# for example FLOWJEPA_TORCH_SPEC="torch torchvision".
set -euo pipefail
cd "$(dirname "$0")"

# Headless OpenGL for MuJoCo: EGL (Mesa) first, OSMesa as the fallback.
if command -v ldconfig >/dev/null && ! { ldconfig -p | grep -q libEGL_mesa && ldconfig -p | grep -q libOSMesa; }; then
    packages="libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing OpenGL libraries for headless rendering: $packages"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $packages >/dev/null
    else
        echo "warning: headless OpenGL libraries are missing; install them with: sudo apt-get install $packages" >&2
    fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# shellcheck disable=SC2086
.venv/bin/python -m pip install -q ${FLOWJEPA_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
.venv/bin/python -m pip install -q -e '.[dev]'
echo "flowjepa installed in $(pwd)/.venv"
