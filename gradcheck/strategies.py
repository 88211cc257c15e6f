"""Old import path of :mod:`gradcheck.testing.strategies`: the same module object."""

import sys

import gradcheck.testing.strategies as _module

sys.modules[__name__] = _module
