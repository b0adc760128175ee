#!/usr/bin/env bash
# Wall time and passes per attack for a ResNet-18 on 100 CIFAR-10 test images (issue #5's benchmark).
# A ResNet-18 has to be trained first, and on this 2-core CPU only briefly: TRADES from scratch on
# SAMPLES training images (default 3,840 = 30 steps of 128, PGD-3). Its robustness is low, which decides
# how many points reach the later attacks: the report lists points attacked and passes per attack.
#   bash bench/resnet18_cifar_eval.sh [SAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SAMPLES=${1:-3840}
ARGS=(run.root=runs/bench run.name=resnet18_eval run.progress=false model.name=resnet18_cifar
      data.val_size=200 finetune.init=scratch finetune.epochs=1 "finetune.samples_per_epoch=$SAMPLES"
      finetune.batch_size=128 finetune.attack.steps=3 finetune.val_attack_steps=3
      evaluate.n_examples=100 evaluate.autoattack.n_examples=100 evaluate.batch_size=100 evaluate.chunk_size=100)
$PY -m stages.finetune --config configs/cifar10_shared.yaml "${ARGS[@]}"
$PY -m stages.evaluate --config configs/cifar10_shared.yaml "${ARGS[@]}"
$PY - <<'PY'
import json
r = json.load(open("runs/bench/resnet18_eval/evaluate/report.json"))
print(json.dumps({k: r[k] for k in ("clean_accuracy", "robust_accuracy", "timings", "passes") if k in r}, indent=1))
PY
