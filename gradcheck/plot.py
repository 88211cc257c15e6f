"""Old import path of :mod:`gradcheck.gate.plot`: the same module object."""

import sys

import gradcheck.gate.plot as _module

sys.modules[__name__] = _module
