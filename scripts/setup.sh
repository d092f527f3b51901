#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv, the requirements, and the pretrained
# EDSR-baseline-LIIF checkpoint in pretrained/ (see scripts/download_pretrained.py).
# usage: bash scripts/setup.sh        (PYTHON=python3.11 picks the interpreter)
set -euo pipefail
[[ ${1:-} != -h && ${1:-} != --help ]] || { sed -n '2,4p' "$0"; exit 0; }
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python scripts/download_pretrained.py --out pretrained/edsr-baseline-liif.pth
