"""Deliberately wrong BatchNormalization variants, each with one realistic bug.

The classes are those of the mutant corpus (``tests/mutants/corpus.py``); this
table picks the five the BatchNormalization tests sweep over every strategy.

``SeedBatchNormalization`` is the seed's class as the book ships it (kept in
``examples/seed_batchnorm.py``): its eval-mode backward reuses the
intermediates of the last train-mode forward.
"""

from conventions_layers import load_example
from mutants.corpus import (BNBackwardEps, BNDgammaFromCentred, BNEvalUsesBatchStats,
                            BNNoMeanTerm, BNUnbiasedVar)


#: The seed's class as the book ships it (examples/seed_batchnorm.py).
SeedBatchNormalization = load_example("seed_batchnorm").BatchNormalization


#: name -> (class, target that must fail, modes where the bug lives)
BROKEN = {
    "no-mean-term": (BNNoMeanTerm, "x", (True,)),
    "unbiased-var-in-backward": (BNUnbiasedVar, "x", (True,)),
    "dgamma-from-centred": (BNDgammaFromCentred, "gamma", (True, False)),
    "eval-uses-batch-stats": (BNEvalUsesBatchStats, "x", (False,)),
    "backward-eps-differs": (BNBackwardEps, "x", (True, False)),
}
