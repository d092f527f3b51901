#!/usr/bin/env bash
# PSNR of a checkpoint on the DIV2K validation set at x2 x3 x4 x6 x12 x18 x24 x30.
# usage: scripts/test-div2k.sh CHECKPOINT [DATA_ROOT]
#   DATA_ROOT holds div2k/DIV2K_valid_HR and div2k/DIV2K_valid_LR_bicubic/X{2,3,4}
#   (default: $LIIF_DATA_ROOT, else ./load).
# example: scripts/test-div2k.sh pretrained/edsr-baseline-liif.pth ./load
set -euo pipefail
[[ $# -ge 1 && $1 != -h && $1 != --help ]] || { sed -n '2,6p' "$0"; [[ $# -ge 1 ]]; exit $?; }
exec "$(dirname "$0")/psnr-table.sh" "$1" "${2:-${LIIF_DATA_ROOT:-./load}}" \
  "2 3 4 6 12 18 24 30" div2k
