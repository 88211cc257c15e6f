"""Old import path of :mod:`gradcheck.gate.config`: the same module object."""

import sys

import gradcheck.gate.config as _module

sys.modules[__name__] = _module
