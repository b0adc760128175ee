"""Is the CPU loader the bottleneck at 224 px? Images per second per loader process for the views each
method needs, from shards our converter writes, against what one GPU step would consume (from FLOPs).

    python bench/bench_loader_224.py --images 640 --workers 0,1,2 --mfu 0.4

What it does, in order:
1. Source images: random crops (256–512 px a side, any aspect) of the natural colour photographs
   scikit-image ships (astronaut, coffee, chelsea, rocket, motorcycle, hubble, retina), saved as JPEG q90,
   so the sizes and content resemble a user's photo pile. No download.
2. Shards through our own writer (``data.shards.write_split``) at ``image_size`` 224, the way ``make data``
   with ``data.dataset=images`` writes them: every image of another size is resized and re-encoded as PNG.
   A second shard set holds the same images already 224×224 as JPEG (kept as they are): what a user gets
   by resizing the pile before conversion.
3. Loader throughput through the training loader (``data.epochs.exact_loader``) for each method's views:
   FARE (none: the reference's Resize+CenterCrop happened at conversion; ToTensor), MIMIR/MAE
   (RandomResizedCrop(224, scale 0.2–1, bicubic) + flip), ACL (SimCLR's two views, bicubic crops).
4. FLOPs of timm's ViT-B/16 at 224 (``torch.utils.flop_counter``: a forward, a forward + backward to the
   input only, a forward + full backward), combined as FARE's reference loop runs them
   (``train/adversarial_training_clip.py``), and turned into images/s one H100 consumes at an assumed
   model-FLOP utilisation; ÷ the measured images/s per loader process = loader cores per GPU.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.augment import SimCLRViews  # noqa: E402
from data.epochs import exact_loader, index_shards  # noqa: E402
from data.shards import RawSample, write_split  # noqa: E402
from data.spec import ShardSpec  # noqa: E402

PHOTOS = [
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
]
H100_BF16_DENSE = 989e12  # FLOP/s, NVIDIA's H100 SXM datasheet figure without sparsity


def source_images(n: int, seed: int = 0) -> list[bytes]:
    import skimage.data

    folder = Path(skimage.data.__file__).parent  # the files scikit-image installs (no pooch download)
    photos = [np.asarray(Image.open(folder / name).convert("RGB")) for name in PHOTOS]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        h, w = p.shape[:2]
        ch, cw = (min(int(rng.integers(256, 513)), s) for s in (h, w))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(p[y : y + ch, x : x + cw])).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def write_shards(folder: Path, split: str, images: list[bytes]) -> list[str]:
    samples = (RawSample(label=None, data=b, ext="jpg", source=f"{i}.jpg") for i, b in enumerate(images))
    write_split(samples, folder, split, image_size=224, shard_size=128)
    return [str(p) for p in sorted(folder.glob(f"{split}-*.tar"))]


class MAEViews:
    """MAE's pretraining crop, as MIMIR's ImageNet runs use it: RandomResizedCrop(224, (0.2, 1), bicubic)."""

    def __init__(self):
        self.view = T.Compose(
            [
                T.RandomResizedCrop(224, scale=(0.2, 1.0), interpolation=T.InterpolationMode.BICUBIC),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
            ]
        )

    def __call__(self, img):
        return (self.view(img),)


VIEWS = {
    "fare (none)": lambda: lambda img: (T.functional.to_tensor(img),),
    "mimir (MAE crop)": MAEViews,
    "acl (2 SimCLR views)": lambda: SimCLRViews(224, interpolation="bicubic"),
}


def throughput(urls: list[str], view, workers: int, batch: int, batches: int) -> float:
    spec = ShardSpec.of_urls(urls, image_size=224, labeled=False, num_workers=workers)
    loader = exact_loader(
        index_shards(spec), spec, view, global_batch=batch, world=1, rank=0, seed=0, epoch=0, drop_last=True
    )
    it = iter(loader)
    next(it)  # start-up (worker fork) not counted
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - t)


def vit_b16_flops() -> dict[str, float]:
    """FLOPs per image of timm's ViT-B/16 at 224 (2 per multiply-add), by pass."""
    import timm
    from torch.utils.flop_counter import FlopCounterMode

    model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).eval()
    x = torch.rand(1, 3, 224, 224)

    def count(fn) -> float:
        with FlopCounterMode(display=False) as fc:
            fn()
        return float(fc.get_total_flops())

    def input_grad():
        # what FARE's PGD does (torch.autograd.grad to the perturbation): no weight gradients. Frozen weights
        # and .backward() give the same passes; FlopCounterMode's hooks do not support autograd.grad
        model.requires_grad_(False)
        xi = x.clone().requires_grad_(True)
        model(xi).square().sum().backward()
        model.requires_grad_(True)

    fwd = count(lambda: model(x))
    return {
        "forward": fwd,
        "forward+input_backward": count(input_grad),
        "forward+full_backward": count(lambda: model(x).square().sum().backward()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=640)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--mfu", type=float, default=0.4, help="assumed model-FLOP utilisation of the H100")
    ap.add_argument("--pgd-steps", type=int, default=10)
    args = ap.parse_args()
    if args.images < (args.batches + 1) * args.batch:
        ap.error(f"--images must be at least (--batches + 1) × --batch = {(args.batches + 1) * args.batch}")
    torch.set_num_threads(1)  # one core per loader process; the figure asked for is per core

    f = vit_b16_flops()
    # FARE's loop per image: f0 forward (no grad), steps × (forward + backward to the input), the clean
    # forward (kept for logging; with clean_weight 0 it is not in the loss), the adversarial forward + backward
    fare = f["forward"] * 2 + args.pgd_steps * f["forward+input_backward"] + f["forward+full_backward"]
    consume = H100_BF16_DENSE * args.mfu / fare
    print(
        f"ViT-B/16 @224 per image: forward {f['forward'] / 1e9:.1f} GFLOP, +input backward "
        f"{f['forward+input_backward'] / 1e9:.1f}, +full backward {f['forward+full_backward'] / 1e9:.1f}; "
        f"FARE step ({args.pgd_steps}-step PGD) {fare / 1e12:.3f} TFLOP/image → one H100 at "
        f"{args.mfu:.0%} of {H100_BF16_DENSE / 1e12:.0f} TFLOP/s consumes {consume:.0f} images/s\n"
    )

    with tempfile.TemporaryDirectory() as tmp:
        images = source_images(args.images)
        t = time.perf_counter()
        png = write_shards(Path(tmp) / "png", "train", images)
        convert_s = time.perf_counter() - t
        small = []
        for b in images:
            buf = io.BytesIO()
            Image.open(io.BytesIO(b)).convert("RGB").resize((224, 224), Image.BICUBIC).save(
                buf, "JPEG", quality=90
            )
            small.append(buf.getvalue())
        jpg = write_shards(Path(tmp) / "jpg", "train", small)
        print(
            f"{args.images} source JPEGs, mean {np.mean([len(b) for b in images]) / 1e3:.0f} kB; conversion to "
            f"224 px shards {args.images / convert_s:.0f} images/s (one process)\n"
        )
        print(
            "| shards | views | loader workers | images/s | images/s per loader process | cores per H100 (FARE) |"
        )
        print("|---|---|---|---|---|---|")
        for label, urls in (("PNG (converted)", png), ("JPEG (pre-sized)", jpg)):
            for name, make in VIEWS.items():
                for w in map(int, args.workers.split(",")):
                    rate = throughput(urls, make(), w, args.batch, args.batches)
                    per = rate / max(w, 1)
                    cores = f"{consume / per:.1f}" if name.startswith("fare") else "n/a (not this recipe)"
                    print(f"| {label} | {name} | {w} | {rate:.0f} | {per:.0f} | {cores} |", flush=True)


if __name__ == "__main__":
    main()
