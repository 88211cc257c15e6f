"""The reference layers (the ``layers`` package) under a name no user module shadows.

``from layers import BatchNormalization`` finds whatever ``layers`` comes
first on ``sys.path`` -- in a project with its own ``layers.py`` next to its
tests, that one. ``from gradcheck.layers import BatchNormalization`` always
gives the reference layers that ship with gradcheck: this module *is* that
package (the same module object as ``layers`` when that name resolves to
ours, so classes compare equal; otherwise the package loaded from its
location under the private name ``gradcheck._reference_layers``).

The built-in suite (:mod:`gradcheck.gate.suite`) imports its layers from here.
"""

import importlib
import importlib.util
import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1] / "layers"
_PRIVATE = "gradcheck._reference_layers"


def _is_ours(origin):
    return origin is not None and Path(origin).resolve() == _PACKAGE / "__init__.py"


def _load():
    """The reference ``layers`` package, whatever the import name ``layers`` resolves to."""
    module = sys.modules.get("layers")
    if module is not None and _is_ours(getattr(module, "__file__", None)):
        return module
    if module is None:
        spec = importlib.util.find_spec("layers")  # locates, does not execute
        if spec is not None and _is_ours(spec.origin):
            return importlib.import_module("layers")
    if _PRIVATE in sys.modules:
        return sys.modules[_PRIVATE]
    init = _PACKAGE / "__init__.py"
    if not init.is_file():
        raise ImportError(f"gradcheck's reference layers are not installed next to it "
                          f"({init} is missing); reinstall gradcheck-np", name=__name__)
    spec = importlib.util.spec_from_file_location(_PRIVATE, init,
                                                  submodule_search_locations=[str(_PACKAGE)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PRIVATE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_PRIVATE]
        raise
    return module


sys.modules[__name__] = _load()
