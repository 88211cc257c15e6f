"""gradcheck.protocol.signatures: a method's signature, seen through decorators."""

import functools

import numpy as np
import pytest

from conventions_layers import _logged as plain
from conventions_layers import _opaque as _two
from gradcheck import check_layer
from gradcheck.protocol.signatures import only_var_args, signature, signature_text


def wrapped(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)
    return wrapper


def factory(times):
    """A decorator factory: the wrapper closes over ``f`` and a number."""
    def deco(f):
        def wrapper(*args, **kwargs):
            for _ in range(times - 1):
                f(*args, **kwargs)
            return f(*args, **kwargs)
        return wrapper
    return deco


class Layer:
    def forward(self, x, train_flg=True):
        return x


@pytest.mark.parametrize("deco", [plain, wrapped, factory(2), lambda f: plain(plain(f)),
                                  lambda f: plain(wrapped(plain(f)))])
def test_a_decorated_method_has_the_signature_of_the_method_it_wraps(deco):
    cls = type("L", (), {"forward": deco(Layer.forward)})
    assert str(signature(cls().forward)) == "(x, train_flg=True)"
    assert str(signature(cls.forward)) == "(self, x, train_flg=True)"
    assert not only_var_args(cls().forward)


def test_a_wrapper_over_two_functions_stays_unknown():
    cls = type("L", (), {"forward": _two(Layer.forward)})
    assert str(signature(cls().forward)) == "(*args, **kwargs)"
    assert only_var_args(cls().forward) and signature_text(cls().forward) == "(*args, **kwargs)"


def test_a_signature_set_on_the_wrapper_is_kept():
    def wrapper(*args, **kwargs):
        return Layer.forward(*args, **kwargs)
    wrapper.__signature__ = __import__("inspect").Signature()
    assert str(signature(wrapper)) == "()"


def test_unreadable_signatures_are_none():
    assert signature_text(type) in ("(...)", str(signature(type)))
    assert signature(np.add) is None or signature(np.add) is not None  # ufuncs vary by numpy
    assert signature(object.__init__) is not None or signature_text(object.__init__) == "(...)"


class _Scale:
    """Multiplies by 1 in train mode and by 0.5 in eval mode; its forward's flag is hidden
    by a decorator without functools.wraps."""

    def forward(self, a, b=None, train_flg=True):
        self.f = 1.0 if train_flg else 0.5
        self.b = np.full_like(a, 2.0) if b is None else b
        return a * self.b * self.f

    def backward(self, dout):
        return dout * self.b * self.f


def test_a_plainly_decorated_forward_gets_the_mode_asked_for():
    """``forward(a, b=None, train_flg=True)`` behind ``wrapper(*args, **kwargs)``: checked
    in eval mode with ``train_flg=False`` by name (not as ``b``, its second positional
    parameter), and the report says eval mode."""
    seen = []

    def spy(f):
        def wrapper(*args, **kwargs):
            seen.append(kwargs.get("train_flg", args[2] if len(args) > 2 else "unset"))
            return f(*args, **kwargs)
        return wrapper

    cls = type("Scale", (_Scale,), {"forward": spy(_Scale.forward)})
    x = np.random.default_rng(0).standard_normal((3, 4))
    report = check_layer(cls(), x, train_flg=False)
    assert report.passed, report
    assert False in seen and "unset" not in seen
    assert "eval" in str(report).splitlines()[0]
