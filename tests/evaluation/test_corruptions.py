"""Common corruptions: generated reproducibly by imagecorruptions-imaug (seeded per image, corruption and
severity, independent of the chunking), or read from pre-computed CIFAR-C files; bad sources are one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_helpers import TinyNet, make_data

from pipeline.errors import UsageError
from pipeline.evaluation import EvaluateConfig, corruption_sources, evaluate_model, write_report
from pipeline.evaluation.corruption_sources import Generated
from pipeline.evaluation.measurements.corruptions import mean_interval, to_uint8

NAMES = ["gaussian_noise", "impulse_noise", "motion_blur"]  # numpy's RNG, the library's seed=, and a blur


def _cfg(**corruptions) -> EvaluateConfig:
    cfg = EvaluateConfig(seed=5, chunk_size=3, batch_size=64)
    cfg.autoattack.enabled, cfg.pgd.steps, cfg.sweep.enabled, cfg.calibration.enabled = False, 0, False, False
    cfg.corruptions.enabled = True
    for k, v in corruptions.items():
        setattr(cfg.corruptions, k, v)
    return cfg


@pytest.fixture(scope="module")
def data32():
    torch.manual_seed(0)
    return TinyNet(32).eval(), *make_data(6, size=32, seed=3)


def test_generated_corruptions_are_reproducible_and_independent_of_chunking(data32, tmp_path):
    model, x, y = data32
    a = evaluate_model(model, x, y, _cfg(names=NAMES), num_classes=10, progress=False)
    cfg = _cfg(names=NAMES)
    cfg.chunk_size = 6
    b = evaluate_model(model, x, y, cfg, num_classes=10, progress=False)
    sa, sb = a.to_dict()["corruptions"], b.to_dict()["corruptions"]
    assert sa["accuracy"] == sb["accuracy"] and sa["mean_accuracy_ci"] == sb["mean_accuracy_ci"]
    assert a.per_sample["corruptions_correct"] == b.per_sample["corruptions_correct"]
    assert list(sa["accuracy"]) == NAMES and all(len(v) == 5 for v in sa["accuracy"].values())
    assert sa["accuracy_ci"]["gaussian_noise"][0] is not None
    files = write_report(a, tmp_path)
    assert files["corruptions"].stat().st_size > 0
    assert "## Common corruptions" in files["markdown"].read_text()


def test_each_image_corruption_and_severity_has_its_own_seed(data32):
    _, x, _ = data32
    clean = to_uint8(x[:2])
    for name in NAMES:
        one = Generated(seed=5).images(name, 3, [0, 1], clean)
        assert np.array_equal(one, Generated(seed=5).images(name, 3, [0, 1], clean))  # reproducible
        assert not np.array_equal(one, Generated(seed=6).images(name, 3, [0, 1], clean))  # seeded by the run
        twice = Generated(seed=5).images(name, 3, [0, 1], clean[[0, 0]])  # one image at two positions
        assert not np.array_equal(twice[0], twice[1]) and np.array_equal(twice[0], one[0])
        other = Generated(seed=5).images(name, 4, [0, 1], clean)  # another severity: another seed
        assert not np.array_equal(one, other)


def test_the_global_numpy_rng_is_left_as_it_was(data32):
    _, x, _ = data32
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    Generated(seed=5).images("gaussian_noise", 1, [0], to_uint8(x[:1]))
    assert np.random.rand() == expected


def _cifar_c(root, x, y, names=("gaussian_noise", "contrast")):
    """Fake CIFAR-C files: severity 1 is the clean image itself, the others all-black."""
    images = to_uint8(x)
    for name in names:
        np.save(root / f"{name}.npy", np.concatenate([images] + [np.zeros_like(images)] * 4))
    np.save(root / "labels.npy", np.tile(y.numpy(), 5))


def test_precomputed_cifar_c_files_are_read_at_the_test_positions(tiny_model, tiny_data, tmp_path):
    x, y = tiny_data
    _cifar_c(tmp_path, x, y)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:12]
    cfg = _cfg(source=str(tmp_path), names=["gaussian_noise", "contrast"])
    report = evaluate_model(
        tiny_model, x[order], y[order], cfg, num_classes=10, progress=False, indices=order
    )
    s = report.to_dict()["corruptions"]
    assert s["accuracy"]["contrast"][0] == report.clean_accuracy  # severity 1 = the clean images, in order
    assert "pre-computed CIFAR-C" in s["source"]


def test_precomputed_files_that_do_not_match_are_one_line_errors(tiny_model, tiny_data, tmp_path):
    x, y = tiny_data
    _cifar_c(tmp_path, x, (y + 1) % 10)
    with pytest.raises(UsageError, match="labels differ from the test split"):
        evaluate_model(tiny_model, x, y, _cfg(source=str(tmp_path), names=["contrast"]), num_classes=10)
    with pytest.raises(UsageError, match="has no fog.npy"):
        evaluate_model(tiny_model, x, y, _cfg(source=str(tmp_path), names=["fog"]), num_classes=10)
    with pytest.raises(UsageError, match="neither a CIFAR-C folder"):
        evaluate_model(tiny_model, x, y, _cfg(source=str(tmp_path / "nothing")), num_classes=10)


def test_a_missing_library_or_small_images_say_what_to_do(tiny_model, tiny_data, monkeypatch):
    x, y = tiny_data
    with pytest.raises(UsageError, match="at least 32×32 pixels"):
        evaluate_model(tiny_model, x, y, _cfg(), num_classes=10)
    monkeypatch.setattr(corruption_sources, "library_available", lambda: False)
    with pytest.raises(UsageError, match=r"pip install -e '\.\[corruptions\]'"):
        evaluate_model(tiny_model, x, y, _cfg(), num_classes=10)


def test_bad_corruption_settings_are_refused():
    with pytest.raises(UsageError, match=r"evaluate.corruptions.names\[0\]='rain' is invalid"):
        _cfg(names=["rain"]).validate()
    with pytest.raises(UsageError, match=r"evaluate.corruptions.severities\[0\]=6 is invalid"):
        _cfg(severities=[6]).validate()


def test_the_mean_interval_is_a_bootstrap_over_images():
    per_image = np.array([0.0, 0.5, 1.0, 1.0, 0.25, 0.75] * 5)
    lo, hi = mean_interval(per_image, seed=0)
    assert lo < per_image.mean() < hi and hi - lo < 0.5
    assert mean_interval(np.ones(4), 0) == [1.0, 1.0] and mean_interval(np.ones(1), 0) is None


def test_precomputed_imagenet_c_folders_are_read_in_imagefolder_order(tiny_model, tiny_data, tmp_path):
    from PIL import Image

    x, y = tiny_data
    order = torch.argsort(y, stable=True)[:12]  # ImageFolder lists class by class
    x, y = x[order], y[order]
    images = to_uint8(x)
    for s in range(1, 6):
        for p, (image, label) in enumerate(zip(images, y.tolist(), strict=True)):
            folder = tmp_path / "fog" / str(s) / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image if s == 1 else image * 0).save(folder / f"{p:03d}.png")
    cfg = _cfg(source=str(tmp_path), names=["fog"])
    report = evaluate_model(tiny_model, x, y, cfg, num_classes=10, progress=False)
    s = report.to_dict()["corruptions"]
    assert s["accuracy"]["fog"][0] == report.clean_accuracy and "ImageNet-C" in s["source"]
