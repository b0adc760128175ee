"""Export the fine-tuned classifier and its backbone as timm folders with a model card.

``runs/<run>/export/{classifier,backbone}/`` load with
``timm.create_model("local-dir:<dir>", pretrained=True)`` after ``import pipeline``.
"""

from pipeline.export import run_export

from ._cli import main

if __name__ == "__main__":
    main("export", run_export)
