"""RobustSSL's judgement of a pretrained backbone: SLF, ALF and AFF fine-tuned from the same backbone and
each evaluated, then one table (``make protocols``).

Each protocol is a named fine-tune (``runs/<run>/finetune_<p>/``, ``evaluate_<p>/``) with the overrides
listed under ``protocols.<p>`` in the config (the recipes give RobustSSL's per-protocol settings).
Finished protocols are not redone: each stage resumes or reuses what is complete.
"""

from __future__ import annotations

import json

from pipeline.config import ExperimentConfig, to_yaml, with_overrides
from pipeline.evaluation.writers import format_accuracy
from pipeline.io import atomic_write_text
from pipeline.run import RunDir, StageRun

from ._cli import main
from .evaluate import run_evaluate
from .finetune import run_finetune


def protocol_config(cfg: ExperimentConfig, protocol: str) -> ExperimentConfig:
    """The experiment with ``protocol``'s settings: its own objective (SLF: CE, ALF: PGD-AT, AFF: TRADES)
    unless ``protocols.<protocol>`` says otherwise, and its own folders (``finetune_<protocol>``)."""
    extra = getattr(cfg.protocols, protocol)
    return with_overrides(
        cfg, [f"finetune.protocol={protocol}", f"finetune.name={protocol}", "finetune.objective=''", *extra]
    )


def _complete(run_dir: RunDir, stage: str) -> bool:
    return run_dir.optional_manifest(stage) is not None


def run_protocols(cfg: ExperimentConfig) -> dict:
    run_dir, rows = RunDir.of(cfg.run), {}
    for protocol in cfg.protocols.names:
        pcfg = protocol_config(cfg, protocol)
        if not _complete(run_dir, pcfg.finetune.stage()):
            run_finetune(pcfg)
        if not _complete(run_dir, pcfg.finetune.stage("evaluate")):
            run_evaluate(pcfg)
        report = json.loads((run_dir.stage(pcfg.finetune.stage("evaluate")) / "report.json").read_text())
        rows[protocol] = report
    with StageRun(run_dir, "protocols", to_yaml(cfg)) as run:
        table = protocols_table(rows)
        atomic_write_text(run.dir / "report.md", table + "\n")
        run.outputs.update(
            report="report.md",
            protocols={
                p: {
                    "clean_accuracy": r["clean_accuracy"],
                    "autoattack": r["robust_accuracy"].get("autoattack"),
                    "pgd": r["robust_accuracy"].get("pgd"),
                    "n_examples": r["n_examples"],
                    "autoattack_n": (r.get("autoattack") or {}).get("n_examples"),
                }
                for p, r in rows.items()
            },
        )
    print(table)
    return run.outputs


def protocols_table(rows: dict[str, dict]) -> str:
    """RobustSSL's table: per protocol, clean and AutoAttack accuracy (and PGD), with n."""
    lines = ["| protocol | clean | AutoAttack | PGD | n (clean / AutoAttack) |", "|---|---|---|---|---|"]
    for p, r in rows.items():
        ra, aa = r["robust_accuracy"], r.get("autoattack") or {}
        lines.append(
            f"| {p.upper()} | {format_accuracy(r['clean_accuracy'])} | {format_accuracy(ra.get('autoattack'))} "
            f"| {format_accuracy(ra.get('pgd'))} | {r['n_examples']} / {aa.get('n_examples', '—')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main("protocols", run_protocols)
