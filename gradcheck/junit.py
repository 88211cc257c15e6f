"""Old import path of :mod:`gradcheck.gate.junit`: the same module object."""

import sys

import gradcheck.gate.junit as _module

sys.modules[__name__] = _module
