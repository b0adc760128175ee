"""Adversarially fine-tune a classifier (SLF / ALF / AFF; TRADES, PGD-AT or CE).

Starts from this run's pretrained backbone by default (`finetune.init`), selects the best epoch by PGD
accuracy on the validation split, and writes ``runs/<run>/finetune/{best,final}/`` as timm folders.
"""

from pipeline.finetune import run_finetune

from ._cli import main

if __name__ == "__main__":
    main("finetune", run_finetune)
