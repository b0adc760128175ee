"""pipeline.evaluate_model on any nn.Module: the README's five-line example and its cheap default."""

import torch
from torch import nn

import pipeline


def test_readme_example_on_a_plain_module(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(3 * 8 * 8, 5)
    )  # no num_classes attribute: found by a forward
    x_test = torch.rand(6, 3, 8, 8)
    with torch.no_grad():
        y_test = model(x_test).argmax(1)  # every point clean-correct: AutoAttack has something to break
    report = pipeline.evaluate_model(model, x_test, y_test, progress=False)
    table = pipeline.summary_table(report)
    assert report.autoattack["version"] == "standard" and report.n_examples == 6
    assert report.robust_accuracy["pgd"] is None and not report.sweep  # PGD and the sweep are opt-in
    assert report.clean_accuracy == 1.0 and report.robust_accuracy["autoattack"] < 1.0
    assert "AutoAttack" in table and "n=6" in table
    pipeline.write_report(report, tmp_path / "my_eval")
    assert (tmp_path / "my_eval" / "report.json").is_file()
