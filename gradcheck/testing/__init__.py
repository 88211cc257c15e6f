"""Gradient checks inside a test suite.

``assertions`` (``assert_gradients``), ``pytest_plugin`` (marker, fixtures,
``--gradcheck-*`` options), ``strategies`` (hypothesis strategies for
shapes, arrays and layer cases) and ``inject`` (a correct layer made wrong by a
known error in one element, to measure what a check catches).
"""
