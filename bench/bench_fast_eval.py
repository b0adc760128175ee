"""The ``fast`` evaluation (APGD-CE + MALT-targeted APGD-T + cross-check; not standard AutoAttack) against
standard AutoAttack on the same model and the same test points: passes, seconds, robust accuracy of both,
and the points standard AutoAttack breaks that the fast version scored robust (issue 16, part 4).

    python bench/bench_fast_eval.py --config configs/quickstart.yaml --n 100 --threads 2
    python bench/bench_fast_eval.py --config configs/cifar10_aff_nfgsm.yaml --n 200 finetune.name=trades

Extra arguments are config overrides (which run, which fine-tune). Only AutoAttack runs (no PGD, sweep,
calibration or smoothing); both versions use the evaluate section's seed, batch size and chunking.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.prepare import ensure_run_data  # noqa: E402
from data.spec import ShardSpec  # noqa: E402
from pipeline.config import load_config, to_yaml  # noqa: E402
from pipeline.evaluation import evaluate_model  # noqa: E402
from pipeline.evaluation.intervals import format_accuracy  # noqa: E402
from pipeline.evaluation.test_split import load_test_split  # noqa: E402
from pipeline.run import RunDir  # noqa: E402
from stages.evaluate import load_model_to_evaluate  # noqa: E402


def run_version(model, x, y, e, version: str, num_classes: int):
    cfg = replace(
        e,
        n_examples=len(y),
        pgd=replace(e.pgd, steps=0),
        sweep=replace(e.sweep, enabled=False),
        calibration=replace(e.calibration, enabled=False),
        smoothing=replace(e.smoothing, enabled=False),
        autoattack=replace(e.autoattack, version=version, n_examples=len(y), attacks=[]),
    )
    report = evaluate_model(model, x, y, cfg, num_classes=num_classes, progress=False)
    keys = [k for k in report.passes if k.startswith("autoattack:")]
    passes = sum(report.passes[k]["forward"] + report.passes[k]["backward"] for k in keys)
    seconds = sum(report.timings["compute_seconds"][k] for k in keys)
    broken = torch.tensor(report.per_sample["aa_final_pred"]) != y
    # per attack: (seconds, forward + backward passes), to see where each version spends its time
    report.stage_costs = {
        k.split(":", 1)[1]: (
            round(report.timings["compute_seconds"][k], 1),
            report.passes[k]["forward"] + report.passes[k]["backward"],
        )
        for k in keys
    }
    return report, passes, seconds, broken


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--n", type=int, default=100, help="test points attacked by both versions")
    ap.add_argument("--threads", type=int, default=0)
    args, overrides = ap.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, overrides)
    data = ensure_run_data(cfg.data, RunDir.of(cfg.run), to_yaml(cfg), progress=False)["outputs"]
    d = cfg.data
    test = ShardSpec.from_manifest("test", data["splits"]["test"], d, data["image_size"])
    x, y, _, _ = load_test_split(test, args.n, d.num_classes)
    x = x.float().div(255.0)
    model, origin = load_model_to_evaluate(cfg)
    model.eval()
    std, p_std, s_std, b_std = run_version(model, x, y, cfg.evaluate, "standard", d.num_classes)
    fast, p_fast, s_fast, b_fast = run_version(model, x, y, cfg.evaluate, "fast", d.num_classes)
    missed = (b_std & ~b_fast).nonzero().squeeze(1).tolist()  # standard broke it, fast scored it robust
    cc = fast.autoattack["cross_check"]
    row = {
        "model": origin,
        "n": len(y),
        "threads": torch.get_num_threads(),
        "standard": {
            "robust": std.autoattack["robust_accuracy"],
            "passes": p_std,
            "seconds": s_std,
            "per_attack": std.stage_costs,
        },
        "fast": {
            "robust": fast.autoattack["robust_accuracy"],
            "passes": p_fast,
            "seconds": s_fast,
            "per_attack": fast.stage_costs,
            "cross_check": {k: cc[k] for k in ("robust_before", "checked", "broken")},
        },
        "passes_ratio": p_std / max(p_fast, 1),
        "seconds_ratio": s_std / max(s_fast, 1e-9),
        "missed_by_fast": missed,
        "fast_broke_standard_robust": int((b_fast & ~b_std).sum()),
    }
    print(json.dumps(row), file=sys.stderr)
    print(
        "| model | n | standard AA robust | fast robust (not standard AA) | passes std / fast | seconds std / fast "
        "| cross-check broke | standard breaks fast missed |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {cfg.run.name}/{cfg.finetune.stage()} | {len(y)} | "
        f"{format_accuracy(std.autoattack['robust_accuracy'], std.autoattack['robust_accuracy_ci'])} | "
        f"{format_accuracy(fast.autoattack['robust_accuracy'], fast.autoattack['robust_accuracy_ci'])} | "
        f"{p_std:,} / {p_fast:,} = **{row['passes_ratio']:.1f}×** | {s_std:.0f} s / {s_fast:.0f} s = "
        f"**{row['seconds_ratio']:.1f}×** | {cc['broken']} of {cc['checked']} checked (of {cc['robust_before']}) | "
        f"{len(missed)} |"
    )


if __name__ == "__main__":
    main()
