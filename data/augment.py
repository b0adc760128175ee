"""Augmentations. Pixels stay in [0,1]: normalisation is the model's first layer, so ε is in pixel units."""

from __future__ import annotations

import torchvision.transforms as T
from lightly.transforms import SimCLRTransform

from .readers import to_tensor


class SimCLRViews:
    """Two SimCLR views of one image (lightly's transform), scaled by a DynACL strength in [0,1].

    Strength 1 is ACL's CIFAR recipe (crop scale (0.08, 1), colour jitter 0.4/0.4/0.4/0.1 with p 0.8,
    grey p 0.2, flip, no blur at 32 px); strength 0 leaves only the flip. DynACL [0] anneals it
    towards 0 so the late epochs see images close to the test distribution.

    [0] Luo et al., Rethinking the Effect of Data Augmentation in Adversarial Contrastive Learning, ICLR 2023.
    """

    def __init__(self, size: int, strength: float = 1.0, min_scale: float = 0.08):
        self.strength = strength
        self.transform = SimCLRTransform(
            input_size=size,
            cj_prob=0.8 * strength,
            cj_strength=0.5 * strength,  # lightly's 0.8/0.8/0.8/0.2 × 0.5 = ACL's 0.4/0.4/0.4/0.1
            min_scale=1.0 - (1.0 - min_scale) * strength,
            random_gray_scale=0.2 * strength,
            gaussian_blur=0.0,
            normalize=None,  # keep [0,1]
        )

    def __call__(self, img):
        v1, v2 = self.transform(img)  # each (3, H, W) in [0,1]
        return v1, v2


class CropFlip:
    """The CIFAR supervised recipe: 4-px reflect-padded random crop + horizontal flip."""

    def __init__(self, size: int, padding: int = 4):
        self.transform = T.Compose([T.RandomCrop(size, padding=padding, padding_mode="reflect"),
                                    T.RandomHorizontalFlip()])

    def __call__(self, img):
        return (to_tensor(self.transform(img)),)
