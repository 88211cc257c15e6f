"""Old import path of :mod:`gradcheck.testing.pytest_plugin`: the same module object."""

import sys

import gradcheck.testing.pytest_plugin as _module

sys.modules[__name__] = _module
