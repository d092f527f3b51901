#!/usr/bin/env bash
# PSNR of a checkpoint on Set5, Set14, B100 and Urban100 at x2 x3 x4 x6 x8 x12.
# usage: scripts/test-benchmark.sh CHECKPOINT [DATA_ROOT [SET ...]]
#   DATA_ROOT holds benchmark/<Set>/HR and benchmark/<Set>/LR_bicubic/X{2,3,4}
#   (default: $LIIF_DATA_ROOT, else ./load); SET is any of set5 set14 b100 urban100 (default: all).
# example: scripts/test-benchmark.sh pretrained/edsr-baseline-liif.pth ../shared/data set5 set14
set -euo pipefail
[[ $# -ge 1 && $1 != -h && $1 != --help ]] || { sed -n '2,6p' "$0"; [[ $# -ge 1 ]]; exit $?; }
ckpt=$1; root=${2:-${LIIF_DATA_ROOT:-./load}}; shift $(( $# >= 2 ? 2 : 1 ))
sets=("$@"); [[ ${#sets[@]} -gt 0 ]] || sets=(set5 set14 b100 urban100)
exec "$(dirname "$0")/psnr-table.sh" "$ckpt" "$root" "2 3 4 6 8 12" "${sets[@]}"
