#!/usr/bin/env bash
# The GPU figures of the README in one run (about 10 minutes on one GPU), printed as one table:
#   1. the device-parametrised tests (reference vectors, fast paths) on cuda (LIIF_TEST_DEVICE);
#   2. scripts/bench_inference.py: EDSR-baseline-LIIF (fp32 / bf16 / fp16, each also under
#      torch.compile), then LTE, lte-fast, SRNO, MetaSR, LM-LIIF and LM-LTE from their
#      official configs (random weights), 128x128 input at x4 and x12, the GPU's chunk policy;
#   3. scripts/bench_train.py on train_edsr-baseline-liif.yaml: the plain fp32 step, the
#      default (compiled, CUDA graphs, fused Adam), --amp, fp16, the reference path, the data
#      loader alone; LTE and SRNO plain and --amp (projected recipe times included);
#   4. two DDP training epochs with 2 processes on generated images, when 2 GPUs exist.
# Without CUDA it is a dry run: it says what it would measure and exits 0.
# usage: bash scripts/check_gpu.sh        (PYTHON=... picks the interpreter; default .venv;
#        ONLY=train runs only the checks whose names start with "train")
set -uo pipefail
[[ ${1:-} != -h && ${1:-} != --help ]] || { sed -n '2,11p' "$0"; exit 0; }
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
CONFIG=configs/train-div2k/train_edsr-baseline-liif.yaml
MODEL=pretrained/edsr-baseline-liif.pth
DATA_ROOT=${LIIF_DATA_ROOT:-$([[ -d ../shared/data ]] && echo ../shared/data || echo load)}
[[ -f $MODEL ]] || MODEL=$CONFIG  # random weights: the same speed
OTHERS="configs/train-div2k/train_edsr-baseline-lte.yaml configs/train-div2k/train_edsr-baseline-lte-fast.yaml configs/train-div2k/train_edsr-sronet.yaml configs/train-div2k/train_edsr-baseline-metasr.yaml configs/train-lmf/train_edsr-baseline-lmliif.yaml configs/train-lmf/train_edsr-baseline-lmlte.yaml"
TESTS="tests/test_renderer.py tests/test_models.py tests/test_platform.py tests/test_lmf.py tests/test_fast_path.py tests/test_train_speedups.py"
STEPS=(
  "tests|timeout 240 env LIIF_TEST_DEVICE=cuda $PY -m pytest -q -p no:cacheprovider $TESTS"
  "inference|timeout 150 $PY scripts/bench_inference.py --model $MODEL --size 128 --scales 4 12 30 --precision fp32 bf16 fp16 --compile --device cuda"
  "inference others|timeout 150 $PY scripts/bench_inference.py --model $OTHERS --size 128 --scales 4 12 --precision fp32 bf16 --device cuda"
  "train plain fp32 (eager, unfused)|timeout 90 $PY scripts/bench_train.py --config $CONFIG --device cuda --steps 50 --compile off --fused-optimizer off"
  "train default (graphs, fused)|timeout 150 $PY scripts/bench_train.py --config $CONFIG --device cuda --steps 200"
  "train amp (bf16, graphs, fused, NHWC)|timeout 150 $PY scripts/bench_train.py --config $CONFIG --device cuda --steps 200 --amp"
  "train amp compile on (no graphs)|timeout 150 $PY scripts/bench_train.py --config $CONFIG --device cuda --steps 200 --amp --compile on"
  "train fp16 (graphs, grad scaler)|timeout 150 $PY scripts/bench_train.py --config $CONFIG --device cuda --steps 200 --precision fp16"
  "train reference amp|timeout 150 $PY scripts/bench_train.py --config $CONFIG --device cuda --steps 100 --impl reference --amp"
  "train loader (4 workers)|timeout 90 $PY scripts/bench_train.py --config $CONFIG --device cuda --steps 20 --compile off --loader 100 --data-root $DATA_ROOT --set train_dataset.dataset.args.root_path=$DATA_ROOT/train/DIV2K_sample train_dataset.dataset.args.repeat=800"
  "train lte plain|timeout 90 $PY scripts/bench_train.py --config configs/train-div2k/train_edsr-baseline-lte.yaml --device cuda --steps 30 --compile off --fused-optimizer off"
  "train lte amp|timeout 150 $PY scripts/bench_train.py --config configs/train-div2k/train_edsr-baseline-lte.yaml --device cuda --steps 100 --amp"
  "train srno plain|timeout 90 $PY scripts/bench_train.py --config configs/train-div2k/train_edsr-sronet.yaml --device cuda --steps 30 --compile off --fused-optimizer off"
  "train srno amp|timeout 150 $PY scripts/bench_train.py --config configs/train-div2k/train_edsr-sronet.yaml --device cuda --steps 100 --amp"
)

gpus=$($PY -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2>/dev/null || echo 0)
if [[ $gpus == 0 ]]; then
  echo "dry run: no CUDA device here, so nothing is measured. On a CUDA machine this runs:"
  for step in "${STEPS[@]}"; do echo "  ${step%%|*}: ${step#*|}"; done
  echo "  ddp (with 2 GPUs): 2 processes, 2 epochs of train_liif.py on generated images"
  echo "and prints one table: | check | result | seconds |"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rows=()
run_step() {  # name, command: runs it, keeps its output in $work/<n>.log, adds table rows
  local name=$1 cmd=$2 log="$work/${#rows[@]}.log" start=$SECONDS status
  eval "$cmd" > "$log" 2>&1; status=$?
  local took=$((SECONDS - start))
  case $name in
    tests) rows+=("| tests on cuda | $(grep -E 'passed|failed|error' "$log" | tail -1) | $took |");;
    inference*)  # one row per line of bench_inference's own table
      while IFS='|' read -r _ model scale output path chunk seconds mps peak speedup diff _; do
        rows+=("| inference $model $scale $output $path, chunks of ${chunk// /} | ${seconds// /} s, ${mps// /} MP/s, peak ${peak// /} MB, ${speedup// /} the reference, max abs diff ${diff// /} | |")
      done < <(grep '^| ' "$log" | grep -v '^| model');;
    *) rows+=("| $name | $(grep -E 'iterations/s' "$log" | cut -d' ' -f2-), peak $(grep -E 'peak memory' "$log" | cut -d' ' -f3-)$(grep -E '^loader|compiled in' "$log" | sed -E 's/.*(compiled in [0-9.]+ s).*/\1/; s/^/; /' | tr -d '\n' | cut -c1-200); $(grep -E '^projected' "$log" | cut -c19-) | $took |");;
  esac
  if [[ $status != 0 ]]; then rows+=("| $name: exit status $status | $(tail -1 "$log" | cut -c1-150) | $took |"); fi
}
for step in "${STEPS[@]}"; do
  [[ ${step%%|*} == ${ONLY:-}* ]] && run_step "${step%%|*}" "${step#*|}"
done

if [[ $gpus -ge 2 && ddp == ${ONLY:-}* ]]; then
  $PY - "$work" <<'EOF'
import os, sys
import numpy as np
import yaml
from PIL import Image
root = sys.argv[1]
os.makedirs(f'{root}/images', exist_ok=True)
rng = np.random.default_rng(0)
for i in range(16):
    Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(f'{root}/images/{i}.png')
config = yaml.safe_load(open('configs/train-div2k/train_edsr-baseline-liif.yaml'))
config['train_dataset']['dataset'] = {'name': 'image-folder', 'args': {'root_path': f'{root}/images', 'repeat': 4}}
config.pop('val_dataset', None)
config.update(epoch_max=2, epoch_save=None, epoch_val=None)
yaml.safe_dump(config, open(f'{root}/ddp.yaml', 'w'))
EOF
  run_step "ddp 2 processes" "timeout 120 $PY -m torch.distributed.run --nproc_per_node 2 train_liif.py --config $work/ddp.yaml --save-dir $work/save --quiet && echo 'iterations/s: (2 epochs done)' && echo 'peak memory: n/a'"
fi

name=$($PY -c 'import torch; print(torch.cuda.get_device_name(0))')
echo "GPU check on $gpus x $name, torch $($PY -c 'import torch; print(torch.__version__)')"
echo "| check | result | seconds |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
