"""Turn the finished chunks into one :class:`EvalReport`."""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from .calibration import expected_calibration_error, mean_confidence_of_wrong, reliability_bins
from .config import EvaluateConfig
from .fast_autoattack import LABEL as FAST_LABEL
from .intervals import LEVEL, METHOD, accuracy_interval, interval_of
from .masking import CheckInput, run_checks
from .report import EvalReport
from .smoothing import ABSTAIN, certified_accuracy


def _cat(records: list[dict], key: str, sub: str | None = None) -> torch.Tensor:
    parts = [(r[key] if sub is None else r[key][sub]) for r in records if r.get(key) is not None]
    return torch.tensor([v for p in parts for v in p])


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y[: pred.shape[0]]).double().mean()) if pred.numel() else math.nan


def _ci(pred: torch.Tensor, y: torch.Tensor) -> list[float] | None:
    """The 95% exact interval of :func:`_accuracy` (``None`` when no point was evaluated)."""
    return accuracy_interval(int((pred == y[: pred.shape[0]]).sum()), int(pred.numel()))


# With version=rand every sub-attack's run repeats pyautoattack's (noisy) clean pass on the points still
# robust: we keep the attribution but say what it means.
RAND_CAVEAT = (
    "version=rand: each sub-attack re-runs the randomized model's clean pass on the points still robust, "
    "so a point misclassified by the noise alone is counted as broken by that sub-attack; the per-attack "
    "split is noisy and the robust accuracy can be slightly lower than one uninterrupted run would give"
)


def first_broken_by(
    clean_pred: torch.Tensor, y: torch.Tensor, attacks: list[str], pred_after: dict[str, torch.Tensor]
) -> list[str]:
    """Per point: 'clean' if misclassified without attack, else the first sub-attack that broke it, else ''."""
    after = {a: pred_after[a].tolist() for a in attacks}
    out = []
    for i, (label, clean) in enumerate(zip(y.tolist(), clean_pred.tolist(), strict=True)):
        if clean != label:
            out.append("clean")
            continue
        out.append(next((a for a in attacks if after[a][i] not in (-1, label)), ""))
    return out


def build_report(
    records: list[dict],
    tensors: list[dict[str, torch.Tensor]],
    cfg: EvaluateConfig,
    *,
    num_classes: int,
    extra: dict,
) -> EvalReport:
    """Merge chunk records (in chunk order) and compute every metric and check.

    Args:
        records: one JSON record per chunk, sorted by chunk index.
        tensors: the matching tensors (probabilities).
        cfg: the evaluation settings.
        num_classes: number of classes.
        extra: run facts to copy into the report (``distributed``, ``versions``, ``notes``, ``wall_seconds``).
    """
    y, clean_pred = _cat(records, "label"), _cat(records, "clean_pred")
    per_sample: dict[str, list] = {
        "index": list(range(y.shape[0])),
        "label": y.tolist(),
        "clean_pred": clean_pred.tolist(),
    }
    checks = CheckInput(
        label=y,
        clean_pred=clean_pred,
        num_classes=num_classes,
        norm=cfg.norm,
        eps=cfg.eps,
        grey_pred=records[0]["grey_pred"],
        grey_dist=_cat(records, "grey_dist"),
    )
    report = EvalReport(
        n_examples=int(y.shape[0]),
        num_classes=num_classes,
        clean_accuracy=_accuracy(clean_pred, y),
        robust_accuracy={"pgd": None, "autoattack": None},
        threat_model={"norm": cfg.norm, "eps": cfg.eps},
        seed=cfg.seed,
        clean_accuracy_ci=_ci(clean_pred, y),
        robust_accuracy_ci={"pgd": None, "autoattack": None},
        intervals={"method": METHOD, "level": LEVEL},
    )
    if cfg.pgd.steps > 0:
        _merge_pgd(records, cfg, y, checks, per_sample, report)
    if cfg.autoattack.enabled:
        _merge_autoattack(records, cfg, y, clean_pred, checks, per_sample, report)
    if cfg.sweep.enabled:
        _merge_sweep(records, cfg, y, checks, per_sample, report, num_classes)
    if cfg.calibration.enabled:
        _merge_calibration(tensors, cfg, y, report, num_classes)
    if cfg.smoothing.enabled:
        _merge_smoothing(records, cfg, y, per_sample, report)
    _merge_costs(records, report)
    report.notes = list(extra.get("notes", []))
    if cfg.masking_checks:
        warnings, notes = run_checks(checks, [r.get("warnings", []) for r in records])
        report.warnings, report.notes = warnings, report.notes + notes
    report.per_sample = per_sample
    report.distributed = extra.get("distributed", {})
    report.versions = extra.get("versions", {})
    report.timings["wall_seconds_this_call"] = extra.get("wall_seconds", math.nan)
    return report


def _merge_pgd(records, cfg, y, checks, per_sample, report) -> None:
    checks.pgd_pred = _cat(records, "pgd_pred")
    per_sample["pgd_pred"] = checks.pgd_pred.tolist()
    report.robust_accuracy["pgd"] = _accuracy(checks.pgd_pred, y)
    report.robust_accuracy_ci["pgd"] = _ci(checks.pgd_pred, y)
    report.pgd = {
        "steps": cfg.pgd.steps,
        "step_size": cfg.pgd_step_size(),  # the step used (resolved when the setting is 0)
        "step_size_rule": "explicit" if cfg.pgd.step_size > 0 else "2.5*eps/steps",
        "restarts": cfg.pgd.restarts,
        "n_examples": int(y.shape[0]),
        "robust_accuracy": report.robust_accuracy["pgd"],
        "robust_accuracy_ci": report.robust_accuracy_ci["pgd"],
    }


def merge_cross_checks(parts: list[dict]) -> dict:
    """The fast version's cross-check over all chunks: how many points the fast attacks left robust, how
    many standard AutoAttack re-attacked, which it broke, and the miss rate with its exact interval."""
    total = {k: sum(p[k] for p in parts) for k in ("robust_before", "checked", "broken")}
    total["broken_index"] = sorted(i for p in parts for i in p["broken_index"])
    total["miss_rate"] = total["broken"] / total["checked"] if total["checked"] else None
    total["miss_rate_ci"] = accuracy_interval(total["broken"], total["checked"])
    return total


def _merge_autoattack(records, cfg, y, clean_pred, checks, per_sample, report) -> None:
    recs = [r for r in records if r.get("autoattack")]
    attacks = recs[0]["autoattack"]["attacks"] if recs else []
    final = _cat(records, "autoattack", "final_pred")
    k = final.shape[0]
    pred_after = {
        a: torch.tensor([v for r in recs for v in r["autoattack"]["pred_after"][a]]) for a in attacks
    }
    broken_by = first_broken_by(clean_pred[:k], y[:k], attacks, pred_after)
    checks.aa_attacks, checks.aa_pred_after, checks.aa_final, checks.first_broken_by = (
        attacks,
        pred_after,
        final,
        broken_by,
    )
    robust = _accuracy(final, y)
    fast = cfg.autoattack.version == "fast"
    # the fast version's number never sits under the "autoattack" key: whatever reads that key (summaries,
    # the model card) then shows no AutoAttack number instead of one that is not standard AutoAttack
    key = "autoattack_fast" if fast else "autoattack"
    report.robust_accuracy[key] = robust
    report.robust_accuracy_ci[key] = _ci(final, y)
    after, left = {}, int((clean_pred[:k] == y[:k]).sum())
    for a in attacks:
        left -= broken_by.count(a)
        after[a] = left / k if k else math.nan
    report.autoattack = {
        "version": cfg.autoattack.version,
        "attacks": attacks,
        "n_examples": k,
        "batch_size": cfg.attack_batch_size(),
        "clean_accuracy": _accuracy(clean_pred[:k], y),
        "clean_accuracy_ci": _ci(clean_pred[:k], y),
        "robust_accuracy": robust,
        "robust_accuracy_ci": report.robust_accuracy_ci[key],
        "robust_accuracy_after": after,
        "robust_accuracy_after_ci": {a: interval_of(v, k) for a, v in after.items()},
        "first_broken_by": {name: broken_by.count(name) for name in ["clean", *attacks, ""]},
        "seed_rule": "derive_seed(seed, chunk_index, 'autoattack') per chunk",
        "attribution_caveat": RAND_CAVEAT if cfg.autoattack.version == "rand" else None,
    }
    report.autoattack["first_broken_by"]["none"] = report.autoattack["first_broken_by"].pop("")
    if fast:
        report.autoattack.update(label=FAST_LABEL, standard_autoattack=False,
                                 cross_check=merge_cross_checks([r["autoattack"]["cross_check"] for r in recs]))
    pad = [None] * (y.shape[0] - k)
    for a in attacks:
        per_sample[f"aa_{a}_pred"] = [None if v == -1 else v for v in pred_after[a].tolist()] + pad
    per_sample["aa_final_pred"] = final.tolist() + pad
    per_sample["first_broken_by"] = [b or "none" for b in broken_by] + pad


def _merge_sweep(records, cfg, y, checks, per_sample, report, num_classes) -> None:
    recs = [r for r in records if r.get("sweep")]
    eps = cfg.sweep_radii()
    pred = torch.tensor([[v for r in recs for v in r["sweep"]["pred"][j]] for j in range(len(eps))]).reshape(
        len(eps), -1
    )
    checks.sweep_eps, checks.sweep_pred = eps, pred
    k = pred.shape[1]
    report.sweep = {
        "eps": eps,
        "attacks": list(cfg.sweep.attacks),
        "n_examples": k,
        "robust_accuracy": [_accuracy(p, y) for p in pred],
        "robust_accuracy_ci": [_ci(p, y) for p in pred],
        "chance": 1.0 / num_classes,
    }
    for j, e in enumerate(eps):
        per_sample[f"sweep_pred_eps={e:.6g}"] = pred[j].tolist() + [None] * (y.shape[0] - k)


def _merge_calibration(tensors, cfg, y, report, num_classes) -> None:
    nb = cfg.calibration.n_bins
    out = {"n_bins": nb, "norm": "l1"}
    for key, name in (("probs_clean", "clean"), ("probs_adv", "autoattack")):
        parts = [t[key] for t in tensors if key in t]
        if not parts:
            continue
        probs = torch.cat(parts)
        yy = y[: probs.shape[0]]
        out[name] = {
            "n_examples": int(probs.shape[0]),
            "ece": expected_calibration_error(probs, yy, num_classes, nb),
            "mean_confidence": float(probs.max(dim=1).values.mean()),
            "mean_confidence_of_wrong": mean_confidence_of_wrong(probs, yy),
            "bins": reliability_bins(probs, yy, nb),
        }
    report.calibration = out


def _merge_smoothing(records, cfg, y, per_sample, report) -> None:
    sm = cfg.smoothing
    pred, radius = _cat(records, "smoothing", "prediction"), _cat(records, "smoothing", "radius").double()
    k = pred.shape[0]
    certified = certified_accuracy(pred, radius, y[:k], list(sm.radii))
    report.smoothing = {
        "sigma": sm.sigma,
        "n0": sm.n0,
        "n": sm.n,
        "alpha": sm.alpha,
        "n_examples": k,
        "radii": list(sm.radii),
        "certified_accuracy": certified,
        "certified_accuracy_ci": [interval_of(a, k) for a in certified],
        "abstain_rate": float((pred == ABSTAIN).float().mean()) if k else math.nan,
        "mean_certified_radius_of_correct": float(radius[pred == y[:k]].mean())
        if (pred == y[:k]).any()
        else math.nan,
    }
    pad = [None] * (y.shape[0] - k)
    per_sample["smooth_pred"] = pred.tolist() + pad
    per_sample["smooth_radius"] = radius.tolist() + pad


def _merge_costs(records, report) -> None:
    seconds: dict[str, float] = defaultdict(float)
    passes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        for k, v in r["seconds"].items():
            seconds[k] += v
        for k, (f, b) in r["passes"].items():
            passes[k][0] += f
            passes[k][1] += b
    report.timings = {"compute_seconds": dict(seconds)}
    report.passes = {k: {"forward": f, "backward": b} for k, (f, b) in passes.items()}
