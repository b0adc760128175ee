"""SimCLRViews against the references' pretraining transforms (ACL ``train_simCLR.py`` tfs_train, DynACL
``train_DynACL.py`` reload(strength)), and CropFlip against their fine-tuning crop.

The knobs are read off the constructed torchvision transforms, and the views are compared draw for draw
with the reference's ``transforms.Compose`` re-typed below under the same torch seed.
"""

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from data.augment import CropFlip, SimCLRViews
from data.readers import to_tensor


def _image(size=32, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def reference_views(size, strength, interpolation):
    """The references' tfs_train at ``strength``, as they write it (ACL passes interpolation=3, DynACL none)."""
    rnd_color_jitter = T.RandomApply(
        [T.ColorJitter(0.4 * strength, 0.4 * strength, 0.4 * strength, 0.1 * strength)], p=0.8 * strength
    )
    rnd_gray = T.RandomGrayscale(p=0.2 * strength)
    crop_kwargs = {"interpolation": T.InterpolationMode.BICUBIC} if interpolation == "bicubic" else {}
    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=(1.0 - 0.9 * strength, 1.0), **crop_kwargs),
            T.RandomHorizontalFlip(p=0.5),
            rnd_color_jitter,
            rnd_gray,
            T.ToTensor(),
        ]
    )


@pytest.mark.parametrize(
    ("strength", "interpolation"), [(1.0, "bicubic"), (1.0, "bilinear"), (0.5, "bilinear"), (0.0, "bilinear")]
)
def test_views_equal_the_reference_draw_for_draw(strength, interpolation):
    ours, ref = SimCLRViews(32, strength, 0.1, interpolation), reference_views(32, strength, interpolation)
    for seed in range(6):
        img = _image(seed=seed)
        torch.manual_seed(seed)
        v1, v2 = ours(img)
        torch.manual_seed(seed)
        r1, r2 = ref(img), ref(img)  # CustomCIFAR10.__getitem__: [transform(img), transform(img)]
        assert torch.equal(v1, r1) and torch.equal(v2, r2)


# strength -> (jitter p, brightness = contrast = saturation, hue, grey p, min crop scale at min_scale 0.1)
EXPECTED = {
    1.0: (0.8, 0.4, 0.1, 0.2, 0.1),  # ACL's recipe
    0.5: (0.4, 0.2, 0.05, 0.1, 0.55),  # DynACL: 1 − 0.9·0.5
    0.0: (0.0, None, None, 0.0, 1.0),  # only the flip
}


@pytest.mark.parametrize("strength", sorted(EXPECTED))
def test_strength_maps_to_the_recipe(strength):
    jitter_p, bcs, hue, grey_p, min_scale = EXPECTED[strength]
    crop, flip, apply, grey, to_tensor_ = SimCLRViews(
        32, strength
    ).view.transforms  # in the references' order
    assert isinstance(to_tensor_, T.ToTensor)  # no normalisation: pixels stay in [0, 1]
    assert crop.size == (32, 32) and crop.scale == pytest.approx((min_scale, 1.0))
    assert crop.interpolation == T.InterpolationMode.BILINEAR  # torchvision's default, DynACL's
    assert isinstance(flip, T.RandomHorizontalFlip) and flip.p == 0.5
    (jitter,) = apply.transforms
    assert isinstance(jitter, T.ColorJitter) and apply.p == pytest.approx(jitter_p)
    for value in (jitter.brightness, jitter.contrast, jitter.saturation):
        # torchvision stores a factor f as the range (1 - f, 1 + f), and no range at all for f = 0
        assert value is None if bcs is None else value == pytest.approx((1 - bcs, 1 + bcs))
    assert jitter.hue is None if hue is None else jitter.hue == pytest.approx((-hue, hue))
    assert isinstance(grey, T.RandomGrayscale) and grey.p == pytest.approx(grey_p)


def test_min_scale_and_interpolation():
    assert SimCLRViews(32, 1.0, min_scale=0.2).view.transforms[0].scale == pytest.approx((0.2, 1.0))
    assert SimCLRViews(32, 0.0, min_scale=0.2).view.transforms[0].scale == pytest.approx((1.0, 1.0))
    assert (
        SimCLRViews(32, interpolation="bicubic").view.transforms[0].interpolation
        == T.InterpolationMode.BICUBIC
    )
    with pytest.raises(ValueError):
        SimCLRViews(32, interpolation="cubic")


@pytest.mark.parametrize("strength", [1.0, 0.5, 0.0])
def test_views_are_images_in_unit_range(strength):
    torch.manual_seed(0)
    views = SimCLRViews(24, strength, interpolation="bicubic")  # bicubic overshoots: ToTensor of uint8 clips
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
    flipped = [torch.equal(v, x.flip(-1)) for v in views]
    assert all(torch.equal(v, x) or f for v, f in zip(views, flipped, strict=True))
    assert 0 < sum(flipped) < len(views)  # both outcomes of the flip occur


def test_cropflip_gives_one_image_in_unit_range():
    torch.manual_seed(0)
    (x,) = CropFlip(32)(_image())
    assert x.shape == (3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_cropflip_pads_with_zeros_like_the_references():
    white = Image.fromarray(np.full((32, 32, 3), 255, dtype=np.uint8))
    torch.manual_seed(0)
    zero = [CropFlip(32)(white)[0] for _ in range(20)]
    assert any(float(x.min()) == 0.0 for x in zero)  # RandomCrop(32, padding=4): black borders
    torch.manual_seed(0)
    reference = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    ref = [reference(white) for _ in range(20)]
    assert all(torch.equal(a, b) for a, b in zip(zero, ref, strict=True))
    reflect = [CropFlip(32, padding_mode="reflect")(white)[0] for _ in range(20)]
    assert all(float(x.min()) == 1.0 for x in reflect)
