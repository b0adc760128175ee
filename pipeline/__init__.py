"""Self-supervised adversarial pretraining pipeline: the library behind the stages.

Importing it registers our model architectures with timm, so exported ``local-dir:`` folders load. The
evaluation of any [0,1]-image classifier is one call::

    import pipeline
    report = pipeline.evaluate_model(model, x_test, y_test)   # clean + standard AutoAttack, Linf 8/255
    print(pipeline.summary_table(report))                     # accuracies with 95% intervals and n
"""

from . import models  # noqa: F401
from .evaluation import EvaluateConfig, evaluate_model, quick_config, summary_table, write_report

__all__ = ["EvaluateConfig", "evaluate_model", "quick_config", "summary_table", "write_report"]
