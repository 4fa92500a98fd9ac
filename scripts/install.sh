#!/usr/bin/env bash
# Create the project's virtual environment and install explora into it.
# On a machine without an NVIDIA GPU the CPU build of PyTorch goes in first, so that the
# package's own `torch>=2.2` requirement is already met and pip never reaches for CUDA wheels.
set -euo pipefail
venv="${1:-.venv}"
python="${PYTHON:-python3}"
torch_cpu="${TORCH_CPU_SPEC:-torch==2.13.0}"   # the CPU wheel available on this machine
torch_index="${TORCH_CPU_INDEX:-}"             # e.g. https://download.pytorch.org/whl/cpu elsewhere

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "install: GPU found, installing the default (CUDA) torch build"
    "${pip[@]}" install "torch>=2.2"
  else
    echo "install: no GPU found, installing the CPU build: $torch_cpu"
    if [ -n "$torch_index" ]; then
      "${pip[@]}" install "$torch_cpu" --index-url "$torch_index"
    else
      "${pip[@]}" install "$torch_cpu"
    fi
  fi
fi
"${pip[@]}" install -e ".[dev]"
"$venv/bin/python" -c "import torch, explora; print(f'install: explora {explora.__version__} with torch {torch.__version__} in $venv')"
