"""pipeline.io: writes are all-or-nothing; metrics.jsonl survives a line cut by a kill."""

import hashlib
import json

import pytest

from pipeline.io import atomic_dir, atomic_file, atomic_write_json, atomic_write_text, read_jsonl, sha256_file


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "report.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_file(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_temp_keeps_the_suffix_and_dir_is_replaced_whole(tmp_path):
    with atomic_file(tmp_path / "fig.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".")
        tmp.write_bytes(b"png")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "stale.txt").write_text("old")
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "model"]


def test_read_jsonl_skips_a_cut_line_and_filters_kind(tmp_path):
    path = tmp_path / "metrics.jsonl"
    atomic_write_text(path, '{"kind": "step", "step": 1}\n{"kind": "epoch", "step": 1}\n{"kind": "st')
    assert read_jsonl(path) == [{"kind": "step", "step": 1}, {"kind": "epoch", "step": 1}]
    assert read_jsonl(path, "epoch") == [{"kind": "epoch", "step": 1}]
    assert read_jsonl(tmp_path / "absent.jsonl") == []
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
