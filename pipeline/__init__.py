"""Self-supervised adversarial pretraining pipeline: the library behind the stages.

Importing it registers our model architectures with timm, so exported ``local-dir:`` folders load. The
evaluation of any [0,1]-image classifier is one call::

    import pipeline
    report = pipeline.evaluate_model(model, x_test, y_test)   # clean + standard AutoAttack, Linf 8/255
    print(pipeline.summary_table(report))                     # accuracies with 95% intervals and n
"""

import importlib

from . import models  # noqa: F401

# the evaluation API, loaded on first use: `import pipeline` (every exported folder's loader) stays light and
# does not import the evaluation's dependencies (torchmetrics pulls in matplotlib.pyplot)
_EVALUATION = ("EvaluateConfig", "evaluate_model", "quick_config", "summary_table", "write_report")
__all__ = list(_EVALUATION)


def __getattr__(name: str):
    if name in _EVALUATION:
        return getattr(importlib.import_module(".evaluation", __name__), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
