#!/usr/bin/env bash
# Runs test.py for every (set, scale) pair and prints a Markdown PSNR table.
# Called by test-benchmark.sh and test-div2k.sh; usable on its own.
set -euo pipefail

usage() {
  cat <<USAGE
usage: $0 CHECKPOINT DATA_ROOT "SCALES" SET [SET ...]
  CHECKPOINT  model checkpoint (.pth, official format)
  DATA_ROOT   folder that replaces ./load in the configs
  SCALES      quoted list of scales, e.g. "2 3 4"
  SET         config stem: configs/test/test-<SET>-<scale>.yaml
Extra test.py flags go in \$TEST_ARGS (e.g. TEST_ARGS='--device cpu'); \$PYTHON picks the
interpreter (default: .venv/bin/python if present, else python).
example: $0 pretrained/edsr-baseline-liif.pth ../shared/data "2 3 4" set5 set14
USAGE
}
[[ $# -ge 4 ]] || { usage; [[ ${1:-} == -h || ${1:-} == --help ]]; exit $?; }
ckpt=$(realpath "$1"); root=$(realpath "$2"); read -r -a scales <<< "$3"; shift 3
cd "$(dirname "$0")/.."
python=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python)}

printf '| set |'; for s in "${scales[@]}"; do printf ' x%s |' "$s"; done; printf '\n'
printf '|---|'; for _ in "${scales[@]}"; do printf -- '---|'; done; printf '\n'
for set in "$@"; do
  printf '| %s |' "$set"
  for s in "${scales[@]}"; do
    # shellcheck disable=SC2086
    r=$("$python" test.py --config "configs/test/test-$set-$s.yaml" --model "$ckpt" \
        --data-root "$root" --quiet ${TEST_ARGS:-} | tail -n 1 | sed 's/^result: //')
    printf ' %s |' "$r"
  done
  printf '\n'
done
