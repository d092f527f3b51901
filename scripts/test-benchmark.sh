#!/usr/bin/env bash
# Evaluates a checkpoint on the benchmark sets at every scale and prints a PSNR table.
set -euo pipefail

usage() {
  cat <<USAGE
usage: $0 CHECKPOINT [DATA_ROOT] [SET ...]
  CHECKPOINT  model checkpoint (.pth, official format)
  DATA_ROOT   folder holding benchmark/<Set>/... (default: \$LIIF_DATA_ROOT or ./load)
  SET         any of set5 set14 b100 urban100 (default: all four)
Scales: 2 3 4 6 8 12. Extra test.py flags go in \$TEST_ARGS (e.g. TEST_ARGS='--device cpu').
example: $0 pretrained/edsr-baseline-liif.pth ../shared/data set5 set14
USAGE
}
[[ $# -ge 1 && $1 != -h && $1 != --help ]] || { usage; [[ $# -ge 1 ]]; exit $?; }
ckpt=$1; shift
root=${1:-${LIIF_DATA_ROOT:-./load}}; [[ $# -ge 1 ]] && shift
sets=("$@"); [[ ${#sets[@]} -gt 0 ]] || sets=(set5 set14 b100 urban100)
python=${PYTHON:-python}
cd "$(dirname "$0")/.."
scales=(2 3 4 6 8 12)

printf '| set |'; for s in "${scales[@]}"; do printf ' x%s |' "$s"; done; printf '\n'
printf '|---|'; for _ in "${scales[@]}"; do printf -- '---|'; done; printf '\n'
for set in "${sets[@]}"; do
  printf '| %s |' "$set"
  for s in "${scales[@]}"; do
    # shellcheck disable=SC2086
    r=$("$python" test.py --config "configs/test/test-$set-$s.yaml" --model "$ckpt" \
        --data-root "$root" --quiet ${TEST_ARGS:-} | tail -n 1 | sed 's/^result: //')
    printf ' %s |' "$r"
  done
  printf '\n'
done
