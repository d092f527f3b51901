#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv, the requirements, and the pretrained
# EDSR-baseline-LIIF checkpoint in pretrained/ (see scripts/download_pretrained.py).
# With --tests, also what the tests need: requirements-test.txt (Selenium) and Debian's
# chromium and chromium-driver for the viewer's browser tests (apt-get, when missing).
# usage: bash scripts/setup.sh [--tests]       (PYTHON=python3.11 picks the interpreter)
set -euo pipefail
[[ ${1:-} != -h && ${1:-} != --help ]] || { sed -n '2,6p' "$0"; exit 0; }
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python scripts/download_pretrained.py --out pretrained/edsr-baseline-liif.pth
if [[ ${1:-} == --tests ]]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
    if ! command -v chromium > /dev/null || ! command -v chromedriver > /dev/null; then
        sudo=; [[ $(id -u) == 0 ]] || sudo=sudo
        if command -v apt-get > /dev/null; then
            echo "installing Debian's chromium and chromium-driver for the viewer's browser tests"
            install="$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium"
            $install chromium-driver > /dev/null 2>&1 ||
                { $sudo apt-get update -qq > /dev/null 2>&1 && $install chromium-driver > /dev/null; } ||
                echo "could not install chromium: the browser tests will be skipped (fail in CI)"
        else
            echo "no apt-get: install Chromium and chromedriver yourself for the browser tests"
        fi
    fi
fi
