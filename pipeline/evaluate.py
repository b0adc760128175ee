"""The evaluate stage: load the model to evaluate and the test split, run the evaluation library
(``pipeline.evaluation``) split over accelerate processes, write the report and print its summary."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from data.readers import expand_urls, load_labeled

from .checkpoint_io import load_safetensors_into, load_timm_folder
from .errors import UsageError
from .evaluation import evaluate_model, write_report
from .models import MODELS
from .run import StageRun, read_manifest, stage_dir, upstream_summary
from .train import open_stage


def load_model_to_evaluate(cfg) -> tuple[nn.Module, dict]:
    """The classifier named by ``evaluate.model`` and a description of where it came from."""
    source = cfg.evaluate.model
    if source == "finetune":
        manifest = read_manifest(cfg, "finetune")
        folder = stage_dir(cfg, "finetune") / manifest["outputs"][cfg.evaluate.checkpoint]
        return load_timm_folder(folder), {**upstream_summary(manifest), "checkpoint": cfg.evaluate.checkpoint}
    if source.startswith("local-dir:"):
        return load_timm_folder(Path(source.split(":", 1)[1])), {"model": source}
    name, weights = source[len("timm:"):].split("@", 1)
    if name not in MODELS and not timm.is_model(name):
        raise UsageError(f"evaluate.model: {name!r} is not a timm model; check the name (timm.list_models())")
    model = timm.create_model(name, num_classes=cfg.data.num_classes)
    return load_safetensors_into(model, Path(weights)), {"model": source}


def check_num_classes(model: nn.Module, num_classes: int, origin: str) -> None:
    classes = getattr(model, "num_classes", None)
    if classes is not None and classes != num_classes:
        raise UsageError(f"{origin} has a head with {classes} classes but data.num_classes={num_classes}; "
                         "evaluate it on its own dataset or set data.num_classes to match")


EVAL_ORDER_SEED = 20231  # fixed, not run.seed: the evaluated subset must be the same for every run


def _load_test_split(cfg, test: dict, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(x uint8, y, positions in the test split, skipped) in a fixed random order of the split.

    Test sets often come sorted by class (ImageFolder); evaluate.n_examples and the AutoAttack / sweep /
    smoothing subsets take the *first* k examples, which must then be a uniform sample, not k images of
    the first class. Only the selected examples are held in memory when the split's size is known.
    """
    urls = expand_urls(test["urls"], "data.test_urls")
    kwargs = dict(size=size, num_classes=cfg.data.num_classes, wrong_size=cfg.data.wrong_size,
                  on_bad=cfg.data.on_bad_sample)

    def fixed_order(n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(EVAL_ORDER_SEED)
        return torch.randperm(n, generator=g)[: cfg.evaluate.n_examples or None]

    count = int(test.get("count") or 0)
    if count:
        order = fixed_order(count)
        x, y, skipped = load_labeled(urls, keep=order, **kwargs)
        if len(y) == len(order):
            return x, y, order, skipped
    # size unknown (pipe: URLs) or samples skipped (positions moved): read all, then permute
    x, y, skipped = load_labeled(urls, **kwargs)
    order = fixed_order(len(y))
    return x[order], y[order], order, skipped


def run_evaluate(cfg) -> dict:
    e = cfg.evaluate
    acc, yaml, data = open_stage(cfg, "evaluate", seed=e.seed)
    model, origin = load_model_to_evaluate(cfg)
    check_num_classes(model, cfg.data.num_classes, f"evaluate.model={e.model}")
    test = data["outputs"]["splits"].get("test")
    if test is None:
        raise UsageError("the dataset has no test split; set data.test_urls")
    x, y, order, skipped = _load_test_split(cfg, test, data["outputs"]["image_size"])
    with StageRun(cfg, "evaluate", yaml, {"data": upstream_summary(data), "model": origin}, acc.is_main_process) as run:
        report = evaluate_model(model, x.float().div(255.0), y, e, num_classes=cfg.data.num_classes,
                                work_dir=run.dir, accelerator=acc, progress=cfg.run.progress)
        report.per_sample["index"] = order.tolist()  # position in the test split, not in the sample
        report.notes.append(f"examples are evaluated in a fixed random order of the test split (seed {EVAL_ORDER_SEED}), "
                            "so every 'first k' subset is a uniform sample; per_sample.csv's index is the "
                            "position in the test split")
        if acc.is_main_process:
            write_report(report, run.dir)
            run.outputs.update(report="report.json", report_md="report.md", per_sample="per_sample.csv",
                               n_examples=len(y), skipped_samples=skipped)
            print(report.summary_table())
        acc.wait_for_everyone()
    acc.end_training()  # destroys the process group on every rank (an orphaned gloo group can abort at exit)
    return run.outputs
