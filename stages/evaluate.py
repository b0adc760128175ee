"""The evaluate stage: clean accuracy, PGD-k, AutoAttack (pyautoattack, the reference algorithms),
ε-sweep, calibration under attack, randomized smoothing and gradient-masking checks.

Evaluates this run's fine-tuned classifier by default (``evaluate.model`` for an exported folder or a
timm name + weights file), split over accelerate processes, and writes
``runs/<run>/evaluate/report.{json,md}``, ``per_sample.csv`` and figures.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.config import ExperimentConfig
from pipeline.errors import UsageError
from pipeline.evaluation import evaluate_model, summary_table, write_report
from pipeline.evaluation.measurements.transfer import SURROGATE_FORMS
from pipeline.evaluation.runner import check_inputs
from pipeline.evaluation.test_split import EVAL_ORDER_SEED, load_test_split
from pipeline.export import folder_facts, load_timm_folder, load_timm_weights
from pipeline.models.speed import speed_up
from pipeline.records import FinetuneOutputs
from pipeline.run import RunDir, StageRun, upstream_summary

from ._cli import main
from ._runtime import open_stage


def load_model_to_evaluate(
    cfg: ExperimentConfig, source: str | None = None, checkpoint: str | None = None
) -> tuple[nn.Module, dict]:
    """The classifier named by ``evaluate.model`` (or by ``source``, in the same forms) and a description
    of where it came from."""
    source, run_dir = source or cfg.evaluate.model, RunDir.of(cfg.run)
    if source == "finetune":
        checkpoint = checkpoint or cfg.evaluate.checkpoint
        finetuned, manifest = FinetuneOutputs.read(run_dir, cfg.finetune.stage(), "finetune")
        folder = run_dir.stage(cfg.finetune.stage()) / finetuned.folder(checkpoint)
        # the fine-tune's own account of its normalisation's source, where it has one (newer manifests)
        facts = {**folder_facts(folder), **{k: v for k, v in finetuned.model.items() if k != "architecture"}}
        origin = {**upstream_summary(manifest), "checkpoint": checkpoint, "facts": facts}
        return load_timm_folder(folder), origin
    if source.startswith("local-dir:"):
        folder = Path(source.split(":", 1)[1])
        return load_timm_folder(folder), {"model": source, "facts": folder_facts(folder)}
    name, weights = source[len("timm:") :].split("@", 1)
    m = (
        cfg.model
    )  # model.mean/std/kwargs describe the external model too (normalisation rule: models/pretrained.py)
    model, facts = load_timm_weights(name, Path(weights), cfg.data.num_classes, m.mean, m.std, m.kwargs)
    return model, {"model": source, "normalisation": facts.normalization_source, "facts": facts.to_json()}


def load_surrogate(cfg: ExperimentConfig) -> tuple[nn.Module | None, str]:
    """The transfer check's surrogate (``evaluate.transfer.surrogate``) and how the report names it. The
    default is the run's other fine-tuning checkpoint: the best epoch is chosen by validation PGD accuracy,
    which favours a checkpoint whose gradients mislead PGD; the final one is not chosen that way (and both
    are at hand in every run)."""
    e = cfg.evaluate
    if not e.transfer.enabled:
        return None, ""
    name = e.transfer.surrogate
    if not name:
        if e.model != "finetune":
            raise UsageError(
                f"evaluate.transfer.surrogate='' means the run's other fine-tuning checkpoint, but "
                f"evaluate.model={e.model}; set evaluate.transfer.surrogate to a model ({SURROGATE_FORMS})"
            )
        name = "finetune:" + ("final" if e.checkpoint == "best" else "best")
    source, _, checkpoint = name.partition(":") if name.startswith("finetune:") else (name, "", "")
    model, _ = load_model_to_evaluate(cfg, source, checkpoint or None)
    check_num_classes(model, cfg.data.num_classes, f"evaluate.transfer.surrogate={name}")
    return model, name


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models hold identical parameters and buffers (names, shapes and values)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa
    )


def check_num_classes(model: nn.Module, num_classes: int, origin: str) -> None:
    classes = getattr(model, "num_classes", None)
    if classes is not None and classes != num_classes:
        raise UsageError(
            f"{origin} has a head with {classes} classes but data.num_classes={num_classes}; "
            "evaluate it on its own dataset or set data.num_classes to match"
        )


def run_evaluate(cfg: ExperimentConfig) -> dict:
    e = cfg.evaluate
    stage = open_stage(cfg, "evaluate", seed=e.seed)
    acc = stage.acc
    model, origin = load_model_to_evaluate(cfg)
    check_num_classes(model, cfg.data.num_classes, f"evaluate.model={e.model}")
    speed_up(
        model, acc.device, channels_last=str(cfg.run.channels_last).lower() == "true"
    )  # auto: training only
    surrogate, surrogate_name = load_surrogate(cfg)
    x, y, order, skipped = load_test_split(stage.split("test"), e.n_examples, cfg.data.num_classes)
    images = x.float().div(255.0)
    # corruption files, the optional library, the surrogate: refused before anything is written
    check_inputs(e, images, y, num_classes=cfg.data.num_classes, surrogate=surrogate, indices=order)
    with StageRun(
        stage.run_dir,
        cfg.finetune.stage("evaluate"),
        stage.yaml,
        {"data": upstream_summary(stage.data), "model": origin},
        acc.is_main_process,
    ) as run:
        report = evaluate_model(
            model,
            images,
            y,
            e,
            num_classes=cfg.data.num_classes,
            work_dir=run.dir,
            accelerator=acc,
            progress=cfg.run.progress,  # a bar on a terminal, plain lines in a log
            surrogate=surrogate,
            indices=order,  # positions in the test split: per-image corruption seeds, pre-computed files
        )
        if "transfer" in report.sections:
            report.sections["transfer"]["surrogate"] = surrogate_name
            if surrogate is not None and same_weights(model, surrogate):
                # the default surrogate is the other checkpoint, which is these weights when the best epoch is
                # the last: the "transfer" attack is then white-box, and the check says nothing about masking
                report.sections["transfer"]["same_weights_as_model"] = True
                note = (
                    f"the transfer surrogate ({surrogate_name}) has the same weights as the evaluated model (the "
                    "best epoch is the last), so the transfer attack is white-box and checks nothing; set "
                    "evaluate.transfer.surrogate to another model"
                )
                report.notes.append(note)
                acc.print(f"[evaluate] warning: {note}")
        report.per_sample["index"] = order.tolist()  # position in the test split, not in the sample
        report.model = origin.get("facts", {})  # architecture, normalisation and its source (report.md)
        report.notes.append(
            f"examples are evaluated in a fixed random order of the test split (seed {EVAL_ORDER_SEED}), "
            "so every 'first k' subset is a uniform sample; per_sample.csv's index is the "
            "position in the test split"
        )
        if acc.is_main_process:
            write_report(report, run.dir)
            run.outputs.update(
                report="report.json",
                report_md="report.md",
                per_sample="per_sample.csv",
                n_examples=len(y),
                skipped_samples=skipped + stage.skipped_when_converting("test"),
            )
            print(summary_table(report))
        acc.wait_for_everyone()
    acc.end_training()  # destroys the process group on every rank (an orphaned gloo group can abort at exit)
    return run.outputs


if __name__ == "__main__":
    main("evaluate", run_evaluate)
