"""Several threat models in one evaluation (``evaluate.threats``): standard AutoAttack (and PGD when on) at
each one's own norm and radius, with intervals, per-sample columns and the masking checks of its norm.

The first threat model is the evaluation's ``norm``/``eps``: the AutoAttack and PGD measurements measure it
and every existing key (``robust_accuracy.autoattack``, ...) describes it. This module measures the others
by running those same measurements on a copy of the settings at the other radius (same seeds: a threat's
row equals what a one-threat evaluation at that radius gives), and gathers ``report.json``'s ``threats``:
one entry per threat model, the first included.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import TYPE_CHECKING

from pipeline.attacks.pgd import PGD_NORMS

from ..intervals import format_accuracy
from .autoattack import AutoAttack, AutoAttackChunk
from .base import ChunkWork, Measurement, Merged, concat, table
from .clean import CleanResult, distance_to_grey
from .pgd import PGD, PGDChunk

if TYPE_CHECKING:
    from pipeline.attacks.threat import ThreatModel

    from ..config import EvaluateConfig
    from ..report import EvalReport

_AA, _PGD = AutoAttack(), PGD()


def threat_tag(norm: str, eps: float) -> str:
    """``L2 eps=0.5``: how a threat model is named in phases, warnings and per-sample columns."""
    return f"{norm} eps={eps:.4g}"


def threat_config(cfg: EvaluateConfig, threat: ThreatModel) -> EvaluateConfig:
    """The settings with ``threat`` as the only threat model (PGD off where our PGD lacks its norm)."""
    pgd = cfg.pgd if threat.norm in PGD_NORMS else replace(cfg.pgd, steps=0)
    return replace(cfg, norm=threat.norm, eps=threat.eps, threats=[], pgd=pgd)


@dataclass
class ThreatsChunk:
    """The extra threat models on one chunk; stored as the chunk record's ``threats`` (a list, one entry
    per extra threat: ``norm``, ``eps``, ``grey_dist`` and the AutoAttack / PGD records at its radius)."""

    entries: list[dict]

    def write(self, record: dict, tensors: dict) -> None:
        record["threats"] = self.entries

    @classmethod
    def read(cls, record: dict, tensors: dict) -> ThreatsChunk | None:
        return cls(record["threats"]) if record.get("threats") is not None else None


class Threats(Measurement):
    name = "threats"
    Record = ThreatsChunk

    def check(self, cfg: EvaluateConfig) -> None:
        for threat in cfg.extra_threats():  # what the AutoAttack measurement refuses for its norm
            _AA.check(threat_config(cfg, threat))

    def notes(self, cfg: EvaluateConfig, num_classes: int) -> list[str]:
        skipped = [threat_tag(t.norm, t.eps) for t in cfg.extra_threats() if t.norm not in PGD_NORMS]
        if cfg.pgd.steps > 0 and skipped:
            return [f"no PGD at {', '.join(skipped)}: our PGD supports only {' and '.join(PGD_NORMS)}"]
        return []

    def runs_on(self, chunk, cfg: EvaluateConfig) -> bool:
        return bool(cfg.extra_threats())

    def run(self, work: ChunkWork) -> ThreatsChunk:
        entries = []
        for threat in work.cfg.extra_threats():
            tag = threat_tag(threat.norm, threat.eps)
            sub_cfg = threat_config(work.cfg, threat)
            # the progress hooks name the threat: its phases are the first threat's names, tallied apart
            sub_ctx = replace(
                work.ctx,
                cfg=sub_cfg,
                status=lambda p, t=tag: work.ctx.status(f"{t} {p}"),
                finished=lambda p, *a, t=tag, **k: work.ctx.finished(f"{t} {p}", *a, **k),
            )
            sub = replace(work, ctx=sub_ctx, record={"seconds": {}, "passes": {}, "warnings": []}, tensors={})
            entry = {
                "norm": threat.norm,
                "eps": threat.eps,
                "grey_dist": distance_to_grey(work.x, threat.norm).tolist(),
            }
            for m in (_PGD, _AA):
                if m.runs_on(work.chunk, sub_cfg):
                    m.run(sub).write(entry, {})
            for phase, seconds in sub.record["seconds"].items():
                forward, backward = sub.record["passes"][phase]
                work.record["seconds"][f"{tag} {phase}"] = seconds
                work.record["passes"][f"{tag} {phase}"] = (forward, backward)
            work.warn([f"[{tag}] {m}" for m in sub.record["warnings"]])
            entries.append(entry)
        return ThreatsChunk(entries)

    def merge(self, parts: list[ThreatsChunk], merged: Merged, report: EvalReport) -> list[dict]:
        cfg = merged.cfg
        rows = [_entry(report, cfg.norm, cfg.eps)]
        for j, threat in enumerate(cfg.extra_threats()):
            sub_cfg, entries = threat_config(cfg, threat), [p.entries[j] for p in parts]
            scratch = _scratch_report(report, threat)
            clean = merged.results["clean"]
            sub = Merged(sub_cfg, merged.num_classes, merged.label)
            sub.results["clean"] = CleanResult(
                clean.pred, clean.grey_pred, concat([SimpleNamespace(**e) for e in entries], "grey_dist")
            )
            for m, record in ((_PGD, PGDChunk), (_AA, AutoAttackChunk)):
                if m.enabled(sub_cfg):
                    chunks = [record.read(e, {}) for e in entries]
                    sub.results[m.name] = m.merge([c for c in chunks if c is not None], sub, scratch)
            for column, values in scratch.per_sample.items():  # L2@0.5:aa_final_pred
                report.per_sample[f"{threat.norm}@{threat.eps:.4g}:{column}"] = values
            rows.append(_entry(scratch, threat.norm, threat.eps))
            merged.other_threats[threat_tag(threat.norm, threat.eps)] = sub  # the masking checks run on it
        report.sections["threats"] = rows
        return rows

    def summary_rows(self, report: EvalReport) -> list[list]:
        rows = report.sections.get("threats") or []
        if len(rows) < 2:
            return []  # one threat model: the rows above are all there is
        return [
            [f"threat {i + 1}: {threat_tag(r['norm'], r['eps'])}", _cells_text(r)] for i, r in enumerate(rows)
        ]

    def markdown(self, report: EvalReport, figures: dict[str, str]) -> list[str]:
        rows = report.sections.get("threats") or []
        if len(rows) < 2:
            return []
        lines = ["## Threat models", "", *threat_table(rows), ""]
        for r in rows[1:]:
            if r.get("autoattack"):  # its per-attack table, as the first threat's section above
                section = _AA.markdown(SimpleNamespace(autoattack=r["autoattack"]), figures)
                lines += [f"### {threat_tag(r['norm'], r['eps'])}: {section[0].lstrip('# ')}", *section[1:]]
        return lines


def _scratch_report(report: EvalReport, threat: ThreatModel) -> EvalReport:
    """An empty report the AutoAttack / PGD merges of another threat model fill (never written)."""
    return replace(
        report,
        robust_accuracy=dict.fromkeys(report.robust_accuracy),
        robust_accuracy_ci=dict.fromkeys(report.robust_accuracy),
        threat_model={"norm": threat.norm, "eps": threat.eps},
        pgd=None,
        autoattack=None,
        sections={},
        per_sample={},
    )


def _entry(report: EvalReport, norm: str, eps: float) -> dict:
    """One entry of ``report.json``'s ``threats``."""
    attacked = report.autoattack or {}
    return {
        "norm": norm,
        "eps": eps,
        "n_examples": report.n_examples,
        "clean_accuracy": report.clean_accuracy,
        "clean_accuracy_ci": report.clean_accuracy_ci,
        "robust_accuracy": {k: v for k, v in report.robust_accuracy.items()},
        "robust_accuracy_ci": {k: v for k, v in report.robust_accuracy_ci.items()},
        "n_autoattack": attacked.get("n_examples", 0),
        "autoattack": report.autoattack,
        "pgd": report.pgd,
    }


def threat_cells(row: dict) -> list[str]:
    """clean, PGD and AutoAttack of one ``threats`` entry, each with its interval and n."""
    ra, ci, n = row["robust_accuracy"], row.get("robust_accuracy_ci") or {}, row["n_examples"]
    aa_key = "autoattack" if ra.get("autoattack") is not None else "autoattack_fast"
    aa_label = "AutoAttack" if aa_key == "autoattack" else "fast (not standard AutoAttack)"
    aa = format_accuracy(ra.get(aa_key), ci.get(aa_key), row["n_autoattack"] or None)
    return [
        format_accuracy(row["clean_accuracy"], row.get("clean_accuracy_ci"), n),
        format_accuracy(ra.get("pgd"), ci.get("pgd"), n) if ra.get("pgd") is not None else "not run",
        aa if aa_key == "autoattack" or ra.get(aa_key) is None else f"{aa_label}: {aa}",
    ]


def threat_table(rows: list[dict]) -> list[str]:
    """The markdown table of threat models: one row per entry of ``threats``."""
    body = [[r["norm"], f"{r['eps']:.4g}", *threat_cells(r)] for r in rows]
    return table(["norm", "ε", "clean", "PGD", "AutoAttack"], body)


def _cells_text(row: dict) -> str:
    clean, pgd, aa = threat_cells(row)
    return f"AutoAttack {aa}; PGD {pgd}"


__all__ = ["Threats", "ThreatsChunk", "threat_cells", "threat_table", "threat_tag"]
