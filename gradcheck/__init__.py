"""Gradient checking for hand-written numpy layers.

>>> from gradcheck import check_layer
"""

from gradcheck.testing.assertions import assert_gradients
from gradcheck.check import check_function, check_layer
from gradcheck.errors import (GradCheckInputError, GradientCheckError, LayerCallError,
                              LayerProtocolError)
from gradcheck.report import Finding, GradCheckReport, TargetResult

__version__ = "0.1.0"

__all__ = [
    "check_layer",
    "check_function",
    "assert_gradients",
    "GradCheckReport",
    "TargetResult",
    "Finding",
    "GradCheckInputError",
    "GradientCheckError",
    "LayerProtocolError",
    "LayerCallError",
    "__version__",
]
