#!/usr/bin/env bash
# Set up protoscene on a fresh Debian/Ubuntu machine: system libraries, a virtual environment in
# .venv, torch, and the project (editable) with pinned dependencies.
#
#   scripts/setup.sh          # runtime
#   scripts/setup.sh dev      # runtime + test tools
#
# torch: by default the CPU build `torch==2.13.0`. On a GPU machine choose the CUDA build first,
# e.g.  TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" scripts/setup.sh
# (the project accepts torch >=2.4,<2.15, so an already installed CUDA torch is kept).
set -euo pipefail
cd "$(dirname "$0")/.."

extras=${1:-}
venv=${VENV:-.venv}
python=${PYTHON:-python3}

# System packages: open3d needs libusb at import time; unar extracts real SYNTHIA .rar archives.
missing=()
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
command -v unar >/dev/null 2>&1 || missing+=(unar)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "setup: installing ${TORCH_SPEC:-torch==2.13.0}"
  # shellcheck disable=SC2086
  "${pip[@]}" ${TORCH_SPEC:-torch==2.13.0}
fi
target="."
[ -n "$extras" ] && target=".[$extras]"
echo "setup: installing protoscene${extras:+[$extras]} (constraints: requirements.lock)"
"${pip[@]}" -c requirements.lock -e "$target"
echo "setup: done ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")'))"
