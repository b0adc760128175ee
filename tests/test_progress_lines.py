"""pipeline/progress.py: the plain lines a log gets instead of tqdm frames."""

from pipeline.progress import clock, counted, eta


def test_counted_passes_items_through_with_lines(capsys):
    items = list(counted(range(3), "[data] converting train", total=3, every_seconds=0))
    assert items == [0, 1, 2]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[data] converting train: 1/3 (33%)  elapsed 0:00:00  ETA ")
    assert lines[-1].startswith("[data] converting train: 3/3 (100%)") and lines[-1].endswith("  done")
    assert list(counted(range(2), "x", enabled=False)) == [0, 1] and capsys.readouterr().out == ""


def test_clock_and_eta():
    assert clock(65) == "0:01:05" and eta(0, 10, 5.0) == "?" and eta(5, 10, 30.0) == "0:00:30"
