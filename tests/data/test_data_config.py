"""DataConfig.check through pipeline.validation.validate: full keys and the fix in one line."""

import pytest

from data.config import DataConfig
from pipeline.validation import InvalidValue, validate


def test_defaults_are_valid():
    validate(DataConfig(), "data")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"dataset": "mnistx"},
            "data.dataset='mnistx' is invalid; use one of: digits, imagefolder, cifar10, cifar100, stl10, svhn, images, shards",
        ),
        ({"wrong_size": "pad"}, "data.wrong_size='pad' is invalid; use one of: resize, crop, error"),
        ({"on_bad_sample": "ignore"}, "data.on_bad_sample='ignore' is invalid; use one of: error, skip"),
        ({"num_classes": 1}, "data.num_classes=1 is invalid; use 2 or more classes"),
        ({"image_size": 4}, "data.image_size=4 is invalid; use 8 px or more"),
        ({"val_size": -1}, "data.val_size=-1 is invalid; use val_size >= 0 and shard_size >= 1"),
        ({"shard_size": 0}, "data.val_size=200 is invalid; use val_size >= 0 and shard_size >= 1"),
        ({"num_workers": -1}, "data.num_workers=-1 is invalid; use 0 or more workers"),
        (
            {"dataset": "imagefolder", "train_source": "t"},
            "data.train_source='t' is invalid; set data.train_source and data.test_source to ImageFolder directories or .tar files",
        ),
        (
            {"dataset": "shards"},
            "data.train_urls='' is invalid; set data.train_urls to a webdataset URL pattern of your shards (labels are optional)",
        ),
        (
            {"dataset": "images"},
            "data.train_source='' is invalid; set data.train_source to a directory of images (searched recursively) or a .tar of them",
        ),
        ({"train_size": -1}, "data.train_size=-1 is invalid; use 0 (count the samples) or the sample count"),
    ],
)
def test_invalid_values_name_the_full_key_and_the_fix(overrides, message):
    with pytest.raises(InvalidValue) as exc:
        validate(DataConfig(**overrides), "data")
    assert str(exc.value) == message


def test_sources_given_are_valid():
    validate(DataConfig(dataset="imagefolder", train_source="a", test_source="b"), "data")
    validate(DataConfig(dataset="shards", train_urls="a", test_urls="b"), "data")
