#!/usr/bin/env bash
# The shortened GPU run recorded in BENCHMARKS.md: ACL pretrain -> AFF (TRADES) -> evaluate on the
# 20,000-image CIFAR-10 subset, ResNet-18. Usage: bash bench/gpu_short_run.sh DIR_WITH_TARS OUT_DIR [ARGS...]
set -uo pipefail
DATA=${1:?dir with train.tar and test.tar}; OUT=${2:?output dir}; shift 2
COMMON=(--config configs/cifar10_gpu_short.yaml data.train_source=$DATA/train.tar data.test_source=$DATA/test.tar
        run.progress=false "$@")
for stage in pretrain finetune evaluate; do
  start=$(date +%s)
  python3 -m stages.$stage "${COMMON[@]}" > "$OUT/$stage.log" 2>&1
  echo "$stage rc=$? wall=$(( $(date +%s) - start ))s" | tee -a "$OUT/times.txt"
done
RUN=runs/$(python3 -c "import sys; from pipeline.config import load_config; print(load_config(sys.argv[1], sys.argv[2:]).run.name)" "${COMMON[@]:1}")
cp "$RUN"/pretrain/metrics.jsonl "$OUT"/pretrain_metrics.jsonl 2>/dev/null
cp "$RUN"/pretrain/loss_curve.png "$RUN"/finetune/accuracy_curve.png "$OUT"/ 2>/dev/null
cp "$RUN"/finetune/metrics.jsonl "$OUT"/finetune_metrics.jsonl 2>/dev/null
cp "$RUN"/evaluate/report.md "$RUN"/evaluate/report.json "$OUT"/ 2>/dev/null
tail -n 12 "$OUT"/evaluate.log
