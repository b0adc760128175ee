"""The DynACL augmentation strength of SimCLRViews, read off the lightly transform it builds.

Strength 1 is ACL's CIFAR recipe; strength 0 leaves only the horizontal flip; values in between scale
every knob linearly. The fields are read from the constructed torchvision transforms, so a change of the
mapping (or of where lightly puts the values) fails here.
"""

import numpy as np
import pytest
import torch
from lightly.transforms.gaussian_blur import GaussianBlur
from lightly.transforms.rotation import RandomRotate

# the transform classes lightly builds with (torchvision's v2 ones where available)
from lightly.transforms.torchvision_v2_compatibility import torchvision_transforms as T
from PIL import Image

from data.augment import CropFlip, SimCLRViews
from data.readers import to_tensor


def _steps(views: SimCLRViews) -> dict[type, object]:
    """The steps of the per-view transform, by type (both views use the same one)."""
    first, second = views.transform.transforms
    assert first is second
    steps = {type(t): t for t in first.transform.transforms}
    assert len(steps) == len(first.transform.transforms)  # one step of each kind
    return steps


# strength -> (jitter p, brightness = contrast = saturation, hue, grey p, min crop scale)
EXPECTED = {
    1.0: (0.8, 0.4, 0.1, 0.2, 0.08),  # ACL: lightly's 0.8/0.8/0.8/0.2 jitter × cj_strength 0.5
    0.5: (0.4, 0.2, 0.05, 0.1, 0.54),
    0.0: (0.0, None, None, 0.0, 1.0),  # only the flip
}


@pytest.mark.parametrize("strength", sorted(EXPECTED))
def test_strength_maps_to_the_recipe(strength):
    jitter_p, bcs, hue, grey_p, min_scale = EXPECTED[strength]
    steps = _steps(SimCLRViews(32, strength))
    apply = steps[T.RandomApply]
    (jitter,) = apply.transforms
    assert isinstance(jitter, T.ColorJitter)
    assert apply.p == pytest.approx(jitter_p)
    for field in (jitter.brightness, jitter.contrast, jitter.saturation):
        # torchvision stores a factor f as the range (1 - f, 1 + f), and no range at all for f = 0
        assert field is None if bcs is None else field == pytest.approx((1 - bcs, 1 + bcs))
    assert jitter.hue is None if hue is None else jitter.hue == pytest.approx((-hue, hue))
    assert steps[T.RandomGrayscale].p == pytest.approx(grey_p)
    crop = steps[T.RandomResizedCrop]
    assert crop.size == (32, 32) and crop.scale == pytest.approx((min_scale, 1.0))
    # at every strength: the flip, and nothing ACL does not use (no blur at 32 px, no vertical flip or
    # rotation, no normalisation: pixels stay in [0, 1])
    assert steps[T.RandomHorizontalFlip].p == 0.5
    assert steps[T.RandomVerticalFlip].p == 0.0 and steps[RandomRotate].prob == 0.0
    assert steps[GaussianBlur].prob == 0.0
    assert T.Normalize not in steps


def test_min_scale_is_the_crop_scale_at_full_strength():
    assert _steps(SimCLRViews(32, 1.0, min_scale=0.2))[T.RandomResizedCrop].scale == pytest.approx((0.2, 1.0))
    assert _steps(SimCLRViews(32, 0.0, min_scale=0.2))[T.RandomResizedCrop].scale == pytest.approx((1.0, 1.0))


def _image(size=32, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.mark.parametrize("strength", [1.0, 0.5, 0.0])
def test_views_are_images_in_unit_range(strength):
    torch.manual_seed(0)
    views = SimCLRViews(24, strength)
    for seed in range(5):
        out = views(_image(24, seed))
        assert len(out) == 2
        for v in out:
            assert v.shape == (3, 24, 24) and v.dtype == torch.float32
            assert 0.0 <= float(v.min()) and float(v.max()) <= 1.0


def test_strength_zero_only_flips():
    torch.manual_seed(0)
    img = _image()
    x = to_tensor(img)
    views = [v for _ in range(8) for v in SimCLRViews(32, 0.0)(img)]
    # atol: lightly scales to [0, 1] by another float route than to_tensor (differences of ~6e-8)
    flipped = [torch.allclose(v, x.flip(-1), atol=1e-6) for v in views]
    assert all(torch.allclose(v, x, atol=1e-6) or f for v, f in zip(views, flipped, strict=True))
    assert 0 < sum(flipped) < len(views)  # both outcomes of the flip occur


def test_cropflip_gives_one_image_in_unit_range():
    torch.manual_seed(0)
    (x,) = CropFlip(32)(_image())
    assert x.shape == (3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
