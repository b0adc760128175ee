"""The evaluate config: defaults, OmegaConf compatibility, one-line ``key=value is invalid; fix`` errors."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from pipeline.attacks.threat import ThreatModel
from pipeline.errors import UsageError
from pipeline.evaluation import EvaluateConfig, first_n
from pipeline.validation import InvalidValue


def test_defaults_are_valid_and_structured():
    cfg = EvaluateConfig()
    cfg.validate()
    merged = OmegaConf.merge(
        OmegaConf.structured(EvaluateConfig),
        OmegaConf.from_dotlist(["eps=0.0157", "autoattack.version=plus", "sweep.eps=[0,0.5]"]),
    )
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, EvaluateConfig) and obj.eps == 0.0157 and obj.sweep.eps == [0, 0.5]
    obj.validate()
    assert EvaluateConfig().pgd.steps == 20 and EvaluateConfig().calibration.n_bins == 15


@pytest.mark.parametrize(
    ("overrides", "key", "hint"),
    [
        ({"eps": 2.0}, "evaluate.eps=2.0", "(0, 1]"),
        ({"eps": 0.0}, "evaluate.eps=0.0", "(0, 1]"),
        ({"norm": "L3"}, "evaluate.norm='L3'", "Linf, L2, L1"),
        ({"batch_size": 0}, "evaluate.batch_size=0", ">= 1"),
        ({"chunk_size": 0}, "evaluate.chunk_size=0", ">= 1"),
        ({"pgd.steps": -1}, "evaluate.pgd.steps=-1", ">= 0"),
        (
            {"autoattack.version": "quick"},
            "evaluate.autoattack.version='quick'",
            "standard, plus, rand, custom, fast",
        ),
        ({"autoattack.version": "custom"}, "evaluate.autoattack.attacks is empty", "apgd-ce"),
        (
            {"autoattack.version": "custom", "autoattack.attacks": ["pgd"]},
            "evaluate.autoattack.attacks[0]='pgd' is invalid",
            "apgd-t",
        ),
        (
            {"autoattack.attacks": ["square"]},
            "evaluate.autoattack.attacks=['square'] is invalid",
            "version=custom",
        ),
        ({"sweep.eps": [0.0, 1.5]}, "evaluate.sweep.eps[1]=1.5", "[0, 1]"),
        ({"sweep.attacks": ["fgsm"]}, "evaluate.sweep.attacks[0]='fgsm' is invalid", "apgd-ce"),
        ({"sweep.attacks": []}, "evaluate.sweep.attacks is empty", "apgd-ce"),
        ({"norm": "L2", "sweep.eps": [0.0, -0.5]}, "evaluate.sweep.eps[1]=-0.5 is invalid", ">= 0 (L2"),
        ({"smoothing.n0": 0}, "evaluate.smoothing.n0=0", ">= 1"),
        ({"smoothing.n": 0}, "evaluate.smoothing.n=0", ">= 1"),
        ({"smoothing.alpha": 1.0}, "evaluate.smoothing.alpha=1.0", "(0, 1)"),
        ({"smoothing.sigma": 0.0}, "evaluate.smoothing.sigma=0.0", "> 0"),
        ({"smoothing.radii": [0.0, -1.0]}, "evaluate.smoothing.radii[1]=-1.0 is invalid", ">= 0"),
        ({"calibration.n_bins": 0}, "evaluate.calibration.n_bins=0 is invalid", ">= 1"),
        ({"pgd.step_size": -0.1}, "evaluate.pgd.step_size=-0.1 is invalid", "0 for 2.5·eps/steps"),
        ({"norm": "L1", "eps": 12.0}, "evaluate.pgd.steps=20 is invalid", "evaluate.pgd.steps=0"),
    ],
)
def test_invalid_values_name_the_key_and_fix(overrides, key, hint):
    merged = OmegaConf.merge(
        OmegaConf.structured(EvaluateConfig),
        OmegaConf.from_dotlist([f"{k}={v}" for k, v in overrides.items()]),
    )
    cfg = OmegaConf.to_object(merged)
    with pytest.raises(UsageError) as err:
        cfg.validate()
    msg = str(err.value)
    assert key in msg and hint in msg and "\n" not in msg


def test_large_l2_and_l1_radii_are_allowed():
    EvaluateConfig(norm="L2", eps=1.5, sweep=EvaluateConfig().sweep).validate()
    cfg = EvaluateConfig(norm="L1", eps=12.0)
    cfg.pgd.steps = 0
    cfg.validate()


def test_path_prefix_is_used_and_construction_does_not_check():
    cfg = EvaluateConfig(eps=-1)  # construction never raises: validate() does
    with pytest.raises(InvalidValue, match=r"^cfg\.evaluate\.eps=-1 is invalid; ") as err:
        cfg.validate("cfg.evaluate")
    assert err.value.key == "cfg.evaluate.eps"


def test_threat_model_fields_are_inherited():
    """norm and eps are the ThreatModel's (checked by threat.check_eps), at the same keys and defaults."""
    cfg = EvaluateConfig()
    assert isinstance(cfg, ThreatModel) and (cfg.norm, cfg.eps) == (ThreatModel().norm, ThreatModel().eps)
    assert {"norm", "eps"} <= set(OmegaConf.structured(EvaluateConfig))


@pytest.mark.parametrize(
    ("requested", "available", "expected"), [(0, 7, 7), (3, 7, 3), (7, 7, 7), (9, 7, 7), (0, 0, 0)]
)
def test_first_n_zero_means_all_and_never_more_than_available(requested, available, expected):
    assert first_n(requested, available) == expected


def test_pgd_step_defaults_to_a_fraction_of_eps_and_explicit_values_win():
    assert EvaluateConfig().pgd.step_size == 0.0
    assert EvaluateConfig().pgd_step_size() == pytest.approx(1 / 255)  # 2.5 · (8/255) / 20
    assert EvaluateConfig(norm="L2", eps=0.5).pgd_step_size() == pytest.approx(0.0625)
    cfg = EvaluateConfig(norm="L2", eps=0.5)
    cfg.pgd.step_size = 2 / 255
    assert cfg.pgd_step_size() == 2 / 255


@pytest.mark.parametrize(
    ("norm", "eps", "last"), [("Linf", 8 / 255, 0.5), ("L2", 0.5, 28.0), ("L1", 12.0, 1536.0)]
)
def test_sweep_radii_depend_on_the_norm_and_reach_grey_on_32px_images(norm, eps, last):
    cfg = EvaluateConfig(norm=norm, eps=eps)
    cfg.pgd.steps = 0  # our PGD has no L1
    cfg.validate()
    radii = cfg.sweep_radii()
    assert radii[0] == 0.0 and radii == sorted(radii) and radii[-1] == last
    assert radii[-1] >= {"Linf": 0.5, "L2": 0.5 * (3 * 32 * 32) ** 0.5, "L1": 0.5 * 3 * 32 * 32}[norm]
    cfg.sweep.eps = [0.0, 0.1]
    assert cfg.sweep_radii() == [0.0, 0.1]  # an explicit list is used as given
