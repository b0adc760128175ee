"""Augmentations. Pixels stay in [0,1]: normalisation is the model's first layer, so ε is in pixel units."""

from __future__ import annotations

import torchvision.transforms as T

from .readers import to_tensor


class SimCLRViews:
    """Two independent views of one image, the ACL/DynACL CIFAR recipe scaled by a DynACL strength s in [0,1]
    (``train_simCLR.py`` tfs_train and ``train_DynACL.py`` reload(strength), step for step)::

        RandomResizedCrop(size, scale=(1 − (1 − min_scale)·s, 1), interpolation)
        RandomHorizontalFlip(0.5)
        RandomApply([ColorJitter(0.4s, 0.4s, 0.4s, 0.1s)], p=0.8s)
        RandomGrayscale(0.2s)
        ToTensor()

    With ``min_scale`` 0.1 the crop scale is the references' (1 − 0.9·s, 1). At s = 1 this is also what
    lightly's ``SimCLRTransform`` gives with cj_strength 0.5, no blur, no normalisation, but that transform
    has no crop interpolation (ACL crops bicubic), so the view is built from torchvision's (v1) transforms,
    the ones the references use. Strength 0 leaves only the flip; DynACL [0] anneals s towards 0 so the late
    epochs see images close to the test distribution.

    [0] Luo et al., Rethinking the Effect of Data Augmentation in Adversarial Contrastive Learning, ICLR 2023.
    """

    def __init__(
        self, size: int, strength: float = 1.0, min_scale: float = 0.1, interpolation: str = "bilinear"
    ):
        self.strength = s = strength
        self.view = T.Compose(
            [
                T.RandomResizedCrop(
                    size,
                    scale=(1.0 - (1.0 - min_scale) * s, 1.0),
                    interpolation=T.InterpolationMode(interpolation),
                ),
                T.RandomHorizontalFlip(p=0.5),
                T.RandomApply([T.ColorJitter(0.4 * s, 0.4 * s, 0.4 * s, 0.1 * s)], p=0.8 * s),
                T.RandomGrayscale(p=0.2 * s),
                T.ToTensor(),  # (3, H, W) float in [0,1], no normalisation
            ]
        )

    def __call__(self, img):
        return self.view(img), self.view(img)  # the references draw each view independently


class CropFlip:
    """The CIFAR supervised recipe: 4-px padded random crop + horizontal flip.

    Zero padding by default, as the references' fine-tuning (``RandomCrop(32, padding=4)`` in ACL's
    ``train_trades.py`` and DynACL's ``train_DynACL.py``/``LPAFT.py``); ``padding_mode="reflect"`` is the
    other common choice."""

    def __init__(self, size: int, padding: int = 4, padding_mode: str = "constant"):
        self.transform = T.Compose(
            [T.RandomCrop(size, padding=padding, padding_mode=padding_mode), T.RandomHorizontalFlip()]
        )

    def __call__(self, img):
        return (to_tensor(self.transform(img)),)


class PlainImage:
    """No augmentation: the image as a (3, H, W) float tensor in [0,1] (FARE trains on the images as they are:
    the reference's loader only resizes, centre-crops and converts)."""

    def __call__(self, img):
        return (to_tensor(img),)
