"""The ``data:`` section of the experiment config and its checks.

Keys in :class:`~pipeline.validation.InvalidValue` are relative to this section; ``validate(cfg, "data")``
prefixes them (``data.dataset='x' is invalid; use one of: digits, ...``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.validation import check, check_choice


@dataclass
class DataConfig:
    dataset: str = "digits"  # a converter (see CONVERTERS in data/converters.py) or "shards" for shards you converted already
    train_source: str = ""  # imagefolder: a directory or a .tar of one, for the training split; images: a folder/tar of images
    test_source: str = ""  # imagefolder: the same for the test split
    download_root: str = "~/.cache/robustpretrain"  # torchvision datasets are downloaded here
    out_dir: str = ""  # where converted shards go; "" = <run>/data/shards
    train_urls: str = ""  # dataset=shards: webdataset URLs (brace pattern, list, or pipe:) of the train split
    val_urls: str = ""  # dataset=shards: held-out labeled split for model selection ("" = none)
    test_urls: str = ""  # dataset=shards: labeled evaluation split (needed by evaluate only)
    train_size: int = 0  # dataset=shards: samples in the training split, if you know it (0 = count them)
    num_classes: int = 10
    image_size: int = 32  # side of the square images the models see
    # what to do with an image of another size: resize (the whole image to size × size, bilinear) | crop (the
    # shorter side to size, bicubic, then the centre square: CLIP's / FARE's preprocessing) | error
    wrong_size: str = "resize"
    val_size: int = 200  # converters hold this many training images out as the validation split
    shard_size: int = 1000  # samples per shard written by the converters
    num_workers: int = 0  # DataLoader worker processes per training process
    # exact: every training epoch visits each sample once, in a seeded order (as the references'
    # DataLoader(shuffle=True)); resampled: an endless stream drawing shards with replacement (for remote or
    # pipe: shards, which cannot be read by offset; an "epoch" is then a sample count, not a pass)
    sampling: str = "exact"
    shuffle_buffer: int = 2000  # samples in the streaming shuffle buffer (sampling=resampled only)
    on_bad_sample: str = "error"  # error | skip: an undecodable or unlabeled sample stops or is counted

    def check(self) -> None:
        # imported here: the converters module imports this one (for the type), and it pulls in numpy,
        # PIL and webdataset, which loading the schema does not need
        from .converters import CONVERTERS

        CONVERTERS.check(self.dataset, "dataset")
        check_choice("wrong_size", self.wrong_size, ("resize", "crop", "error"))
        check_choice("on_bad_sample", self.on_bad_sample, ("error", "skip"))
        check_choice("sampling", self.sampling, ("exact", "resampled"))
        check(self.num_classes >= 2, "num_classes", self.num_classes, "use 2 or more classes")
        check(self.image_size >= 8, "image_size", self.image_size, "use 8 px or more")
        check(
            self.val_size >= 0 and self.shard_size >= 1,
            "val_size",
            self.val_size,
            "use val_size >= 0 and shard_size >= 1",
        )
        check(self.num_workers >= 0, "num_workers", self.num_workers, "use 0 or more workers")
        if self.dataset == "imagefolder":
            check(
                bool(self.train_source and self.test_source),
                "train_source",
                self.train_source,
                "set {at}train_source and {at}test_source to ImageFolder directories or .tar files",
            )
        if self.dataset == "images":
            check(
                bool(self.train_source),
                "train_source",
                self.train_source,
                "set {at}train_source to a directory of images (searched recursively) or a .tar of them",
            )
        if self.dataset == "shards":
            check(
                bool(self.train_urls),
                "train_urls",
                self.train_urls,
                "set {at}train_urls to a webdataset URL pattern of your shards (labels are optional)",
            )
        check(
            self.train_size >= 0,
            "train_size",
            self.train_size,
            "use 0 (count the samples) or the sample count",
        )
