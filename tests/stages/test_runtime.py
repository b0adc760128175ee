"""stages/_runtime.py: what every stage reads from the data manifest."""

from stages._runtime import Stage


def test_later_manifests_count_the_data_stages_skips():
    outputs = {"splits": {"train": {"count": 7, "skipped": {"count": 1, "files": []}}, "test": {"count": 3}}}
    stage = Stage(None, None, "", {"outputs": {**outputs, "image_size": 32, "num_classes": 0}}, None)
    assert stage.skipped_when_converting("train") == 1 and stage.skipped_when_converting("test") == 0
