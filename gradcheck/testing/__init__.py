"""Gradient checks inside a test suite.

``assertions`` (``assert_gradients``), ``pytest_plugin`` (marker, fixtures,
``--gradcheck-*`` options) and ``strategies`` (hypothesis strategies for
shapes, arrays and layer cases).
"""
