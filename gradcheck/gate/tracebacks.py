"""Tracebacks of the user's code alone: gradcheck's and importlib's frames left out."""

import os
import traceback
from pathlib import Path

__all__ = ["user_traceback"]

_INTERNAL_DIRS = (str(Path(__file__).resolve().parents[1]) + os.sep,
                  os.path.join(os.path.dirname(os.__file__), "importlib") + os.sep)


def _internal(filename):
    """A frame of gradcheck's own code or of the import machinery."""
    if filename.startswith("<"):
        return filename.startswith("<frozen importlib")
    return str(Path(filename).resolve()).startswith(_INTERNAL_DIRS)


def user_traceback(exc):
    """The traceback of ``exc`` (and its causes) with only the user's frames.

    Parameters
    ----------
    exc : BaseException
        The exception the user's code raised (a factory, an import, a layer).

    Returns
    -------
    str
        The formatted traceback; gradcheck's and importlib's frames are left
        out, a ``SyntaxError`` keeps its file, line and caret.
    """
    te = traceback.TracebackException.from_exception(exc)
    chain = te
    while chain is not None:
        chain.stack = traceback.StackSummary.from_list(
            [f for f in chain.stack if not _internal(f.filename)])
        chain = chain.__cause__ or chain.__context__
    return "".join(te.format()).rstrip()
