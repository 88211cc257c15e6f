"""Old import path of :mod:`gradcheck.gate.cli`: the same module object."""

import sys

import gradcheck.gate.cli as _module

sys.modules[__name__] = _module
