"""Deliberately wrong BatchNormalization variants, each with one realistic bug.

The classes are those of the mutant corpus (``tests/mutants/corpus.py``); this
table picks the five the BatchNormalization tests sweep over every strategy.

``SeedBatchNormalization`` is the seed's class as the book ships it (kept in
``examples/seed_batchnorm.py``): its eval-mode backward reuses the
intermediates of the last train-mode forward.
"""

import importlib.util
from pathlib import Path

from mutants.corpus import (BNBackwardEps, BNDgammaFromCentred, BNEvalUsesBatchStats,
                            BNNoMeanTerm, BNUnbiasedVar)


def _load_example(name):
    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The seed's class as the book ships it (examples/seed_batchnorm.py).
SeedBatchNormalization = _load_example("seed_batchnorm").BatchNormalization


#: name -> (class, target that must fail, modes where the bug lives)
BROKEN = {
    "no-mean-term": (BNNoMeanTerm, "x", (True,)),
    "unbiased-var-in-backward": (BNUnbiasedVar, "x", (True,)),
    "dgamma-from-centred": (BNDgammaFromCentred, "gamma", (True, False)),
    "eval-uses-batch-stats": (BNEvalUsesBatchStats, "x", (False,)),
    "backward-eps-differs": (BNBackwardEps, "x", (True, False)),
}
