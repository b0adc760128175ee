"""report.md: what it says about the evaluated model."""

from test_progress import _tiny  # the evaluation test folder is on sys.path (conftest.py)

import pipeline


def test_report_md_names_the_model_and_its_normalisation(tmp_path):
    model, x, y, cfg = _tiny()
    report = pipeline.evaluate_model(model, x, y, cfg, progress=False)
    report.model = {
        "architecture": "resnet18",
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "normalization_source": "model.mean/std",
    }
    pipeline.write_report(report, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert (
        "Model: `resnet18`; normalisation mean [0.5, 0.5, 0.5] std [0.25, 0.25, 0.25] (from model.mean/std)"
        in md
    )
