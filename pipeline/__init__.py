"""Self-supervised adversarial pretraining pipeline: the library behind the stages.

Importing it registers our model architectures with timm, so exported ``local-dir:`` folders load.
"""

from . import models  # noqa: F401
