"""The one image policy, shared by the shard writer and the readers: decode, make RGB, and fit the
square size the models see (resize, resize the shorter side and centre-crop, or refuse when
``data.wrong_size=error``).

Each caller words the errors for its own context (a source image to convert vs. a sample in a shard).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from torchvision.transforms import functional as TF


class WrongSize(ValueError):
    """An image of another size while ``data.wrong_size=error``."""

    def __init__(self, width: int, height: int, size: int):
        self.width, self.height, self.size = width, height, size
        super().__init__(f"image is {width}x{height}, expected {size}x{size}")


def fit_image(source: bytes | np.ndarray, size: int, wrong_size: str) -> tuple[Image.Image, list[str]]:
    """Encoded bytes or a uint8 array → an RGB ``size``×``size`` image, and why it was changed
    (``"mode L->RGB"``, ``"resized"``; empty when it was usable as it is).

    Raises :class:`WrongSize`, or whatever PIL raises for data that does not decode.
    """
    img = Image.fromarray(source) if isinstance(source, np.ndarray) else Image.open(io.BytesIO(source))
    img.load()  # PIL decodes lazily: a truncated file must fail here, not later in a transform
    reasons = []
    if img.mode != "RGB":
        reasons.append(f"mode {img.mode}->RGB")
        img = img.convert("RGB")
    if img.size != (size, size):
        if wrong_size == "error":
            raise WrongSize(img.size[0], img.size[1], size)
        if wrong_size == "crop":
            # open_clip's / torchvision's eval preprocessing (FARE trains on it): the shorter side to ``size``,
            # bicubic, then the centre square; torchvision's functions, so the rounding is theirs
            reasons.append("resized and centre-cropped")
            img = TF.center_crop(TF.resize(img, size, interpolation=TF.InterpolationMode.BICUBIC), size)
        else:
            reasons.append("resized")
            img = img.resize((size, size), Image.BILINEAR)
    return img, reasons
