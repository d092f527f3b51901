#!/usr/bin/env bash
# Wall time and peak RSS of demo.py on large images (GNU time's "Maximum resident set size").
#
# Makes the inputs from a DIV2K image upscaled with PIL (kept outside the repo, in $WORK), then
# runs demo.py on them under /usr/bin/time -v, one table row per case:
#   a: 3456x4608 (HxW) -> 6912x9216 (x2)      b: 1920x1080 (WxH) -> 7680x4320 (x4)
#   c: 256x256 -> 16384x16384 (x64), the output PNG streamed to disk (0.8 GB of samples)
# a and b each with the memory plan of --max-memory (tiles and bands) and, for comparison,
# with the whole-image encoder (--max-memory large enough to need no tiles); c with the
# default plan. All under a cap of CAP_GB of virtual memory (ulimit -v) so that a run that
# cannot fit fails instead of swapping.
#
# Usage: bash scripts/bench_memory.sh [SOURCE_IMAGE] [CASES]
#   SOURCE_IMAGE default ../shared/data/train/DIV2K_sample/0004.png
#   CASES default "a-tiled a-tiled-bf16 a-whole b-tiled b-tiled-bf16 b-whole b-whole-bf16
#   c-stream-bf16"
# Environment: MODEL (default pretrained/edsr-baseline-liif.pth), MAX_MEMORY (default 1GB),
#   CAP_GB (default 20), WORK (default ${TMPDIR:-/tmp}/liif-bench-memory), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE=${1:-../shared/data/train/DIV2K_sample/0004.png}
CASES=${2:-a-tiled a-tiled-bf16 a-whole b-tiled b-tiled-bf16 b-whole b-whole-bf16 c-stream-bf16}
MODEL=${MODEL:-pretrained/edsr-baseline-liif.pth}
MAX_MEMORY=${MAX_MEMORY:-1GB}
CAP_GB=${CAP_GB:-20}
WORK=${WORK:-${TMPDIR:-/tmp}/liif-bench-memory}
PYTHON=${PYTHON:-python}
mkdir -p "$WORK"

"$PYTHON" - "$SOURCE" "$WORK" <<'EOF'
import os, sys
from PIL import Image
source, work = sys.argv[1:]
img = Image.open(source).convert('RGB')
for name, size in (('a.png', (4608, 3456)), ('b.png', (1920, 1080)), ('c.png', (256, 256))):
    path = os.path.join(work, name)
    if not os.path.exists(path):
        img.resize(size, Image.BICUBIC).save(path)
EOF

printf '| case | input (WxH) | output (WxH) | precision | plan | wall (s) | peak RSS (GB) |\n'
printf '|---|---|---|---|---|---|---|\n'
for case in $CASES; do
    input=$WORK/${case%%-*}.png
    case $case in  # PIL sizes above are (W, H)
        a-*) size="--scale 2"; in_size=4608x3456; out_size=9216x6912;;
        b-*) size="--scale 4"; in_size=1920x1080; out_size=7680x4320;;
        *) size="--resolution 16384,16384"; in_size=256x256; out_size=16384x16384;;
    esac
    precision=fp32; [[ $case == *bf16 ]] && precision=bf16
    if [[ $case == *whole* ]]; then memory="--max-memory 1000GB"; plan=whole
    elif [[ $case == c-* ]]; then memory=; plan="default, streamed PNG"
    else memory="--max-memory $MAX_MEMORY"; plan="--max-memory $MAX_MEMORY"; fi
    log=$WORK/$case.log
    set +e
    (ulimit -v $((CAP_GB * 1024 * 1024)); /usr/bin/time -v "$PYTHON" demo.py --input "$input" \
        --output "$WORK/$case-out.png" $size --model "$MODEL" --precision $precision \
        $memory --quiet) > "$log" 2>&1
    status=$?
    set -e
    wall=$(grep 'Elapsed (wall clock)' "$log" | awk '{print $NF}' |
        awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }')
    rss=$(grep 'Maximum resident' "$log" | awk '{printf "%.2f", $NF / 1048576}')
    if [[ $status -ne 0 ]]; then
        wall="failed after $wall ($(grep -m1 -o 'error: .*\|MemoryError\|Killed\|can.t allocate memory\|out of memory.*' "$log" | head -c 80))"
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$case" "$in_size" "$out_size" "$precision" \
        "$plan" "$wall" "$rss"
done
