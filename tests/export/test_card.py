"""The model card's evaluation table shows each accuracy with its 95% interval and n."""

from __future__ import annotations

from pipeline.evaluation.intervals import accuracy_interval
from pipeline.export.card import _evaluation_lines


def test_card_shows_intervals_from_report_json():
    report = {
        "n_examples": 100,
        "threat_model": {"norm": "Linf", "eps": 8 / 255},
        "clean_accuracy": 0.51,
        "clean_accuracy_ci": accuracy_interval(51, 100),
        "robust_accuracy": {"pgd": 0.2, "autoattack": 0.1},
        "robust_accuracy_ci": {"pgd": accuracy_interval(20, 100), "autoattack": accuracy_interval(2, 20)},
        "autoattack": {"n_examples": 20},
    }
    text = "\n".join(_evaluation_lines(report))
    assert "51.00% [40.8, 61.1] (n=100)" in text and "(n=20)" in text and "Clopper–Pearson" in text


def test_card_computes_intervals_for_an_older_report_without_them():
    report = {
        "n_examples": 100,
        "threat_model": {"norm": "L2", "eps": 0.5},
        "clean_accuracy": 0.51,
        "robust_accuracy": {"pgd": None, "autoattack": None},
    }
    text = "\n".join(_evaluation_lines(report))
    assert "51.00% [40.8, 61.1] (n=100)" in text and "n/a" in text


def test_card_labels_a_fast_evaluation_and_a_bf16_pgd():
    report = {
        "n_examples": 100,
        "threat_model": {"norm": "Linf", "eps": 8 / 255},
        "clean_accuracy": 0.51,
        "robust_accuracy": {"pgd": 0.2, "autoattack_fast": 0.15},
        "robust_accuracy_ci": {
            "pgd": accuracy_interval(20, 100),
            "autoattack_fast": accuracy_interval(3, 20),
        },
        "autoattack": {"n_examples": 20, "version": "fast"},
        "notes": [
            "PGD and the sweep ran under bf16 autocast (evaluate.precision=bf16); clean accuracy and "
            "AutoAttack ran in fp32"
        ],
    }
    text = "\n".join(_evaluation_lines(report))
    assert "**fast (not standard AutoAttack)**: 15.00%" in text and "(n=20)" in text
    assert "Note: PGD and the sweep ran under bf16 autocast" in text


def test_card_shows_one_row_per_threat_model_the_corruption_mean_and_the_transfer_check():
    def row(norm, eps, aa):
        return {
            "norm": norm,
            "eps": eps,
            "n_examples": 100,
            "clean_accuracy": 0.51,
            "clean_accuracy_ci": accuracy_interval(51, 100),
            "robust_accuracy": {"pgd": None, "autoattack": aa / 100},
            "robust_accuracy_ci": {"pgd": None, "autoattack": accuracy_interval(aa, 100)},
            "n_autoattack": 100,
        }

    report = {
        "n_examples": 100,
        "threat_model": {"norm": "Linf", "eps": 8 / 255},
        "clean_accuracy": 0.51,
        "robust_accuracy": {"pgd": None, "autoattack": 0.2},
        "threats": [row("Linf", 8 / 255, 20), row("L2", 0.5, 30)],
        "corruptions": {
            "names": ["fog", "snow"],
            "severities": [1, 2, 3, 4, 5],
            "accuracy": {"fog": [0.5] * 5, "snow": [0.3] * 5},
            "accuracy_ci": {
                "fog": [accuracy_interval(50, 100)] * 5,
                "snow": [accuracy_interval(30, 100)] * 5,
            },
            "corruption_mean": {"fog": 0.5, "snow": 0.3},
            "source": "generated",
            "n_examples": 100,
            "mean_accuracy": 0.4,
            "mean_accuracy_ci": [0.35, 0.45],
        },
        "transfer": {
            "surrogate": "finetune:final",
            "n_examples": 100,
            "robust_accuracy": 0.3,
            "robust_accuracy_ci": accuracy_interval(30, 100),
            "n_compared": 100,
            "broken_only_by_transfer": 2,
            "broken_only_by_transfer_rate": 0.02,
            "broken_only_by_transfer_ci": accuracy_interval(2, 100),
        },
    }
    text = "\n".join(_evaluation_lines(report))
    assert (
        "| Linf | 0.03137 |" in text and "| L2 | 0.5 | 51.00% [40.8, 61.1] (n=100) | not run | 30.00%" in text
    )
    assert "Common corruptions (2 × 5 severities, generated): mean accuracy 40.00% [35.0, 45.0]" in text
    assert "| snow | 30.0 [21.2, 40.0] |" in text
    assert "Transfer attack from `finetune:final`: robust accuracy 30.00%" in text and "2 of 100" in text
    assert "white-box rerun" not in text
    report["transfer"]["same_weights_as_model"] = True
    assert "this is a white-box rerun, not a transfer check" in "\n".join(_evaluation_lines(report))


def test_card_names_the_real_architecture_and_the_normalisation_source():
    from pipeline.export.card import CardFacts, model_card
    from pipeline.models import ModelConfig

    facts = CardFacts(
        run_name="r",
        arch="resnet18",
        model=ModelConfig("timm:resnet18", mean=[0.5] * 3, std=[0.5] * 3),
        image_size=32,
        num_classes=10,
        training=[],
        dataset="imagefolder",
        registered_as="timm_any",
        normalization=(
            [0.485, 0.456, 0.406],
            [0.229, 0.224, 0.225],
            "weights/r18/config.json (pretrained_cfg)",
        ),
    )
    card = model_card(facts)
    assert card.startswith("# resnet18 — robust backbone")
    assert "architecture: `resnet18` (timm, inside this project's normalising wrapper `timm_any`)" in card
    assert (
        "mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225], from weights/r18/config.json (pretrained_cfg)"
        in card
    )
