"""State restore without silent limits, aliases kept on every code path.

After any check -- passed, failed, raised or interrupted -- every object
reachable from the layer is the same object as before, of the same class, with
bit-identical contents; nothing was added or removed.
"""

import collections
import pickle
import random

import numpy as np
import pytest
from hypothesis import example, given, strategies as st
from hypothesis.extra.numpy import arrays

from gradcheck import GradCheckInputError, check_layer
from gradcheck.protocol.state import StateSnapshot, dumps_shared

X = np.random.default_rng(0).normal(size=(4, 3))


def fingerprint(root):
    """Every object reachable from ``root``: path, identity, class and contents.

    Written independently of :mod:`gradcheck.protocol.state` (the code under test).
    """
    out, seen, stack = [], {}, [(root, "root")]
    while stack:
        v, path = stack.pop()
        if isinstance(v, (int, float, str, bool, type(None))):
            out.append((path, repr(v)))
            continue
        if id(v) in seen:
            out.append((path, "alias of", seen[id(v)]))
            continue
        seen[id(v)] = path
        entry = (path, id(v), type(v))
        if isinstance(v, np.ndarray):
            out.append(entry + (v.dtype.str, v.shape, v.strides, v.tobytes()))
        elif isinstance(v, np.random.Generator):
            out.append(entry + (repr(v.bit_generator.state),))
        elif isinstance(v, random.Random):
            out.append(entry + (v.getstate(),))
        elif isinstance(v, (list, tuple, collections.deque)):
            out.append(entry + (len(v),))
            stack += [(c, f"{path}[{i}]") for i, c in enumerate(v)]
        elif isinstance(v, dict):
            out.append(entry + (tuple(v),))
            stack += [(c, f"{path}[{k!r}]") for k, c in v.items()]
        elif isinstance(v, set):
            out.append(entry + (tuple(sorted(map(repr, v))),))
        else:
            attrs = dict(vars(v)) if hasattr(v, "__dict__") else {}
            for cls in type(v).__mro__:
                for s in cls.__dict__.get("__slots__", ()):
                    if s != "__weakref__" and hasattr(v, s):
                        attrs[s] = getattr(v, s)
            out.append(entry + (tuple(sorted(attrs)),))
            stack += [(c, f"{path}.{k}") for k, c in sorted(attrs.items())]
    return out


# ---------------------------------------------------------------------------
# Nested and slotted layers of random depth (hypothesis)
# ---------------------------------------------------------------------------

class Plain:
    """A nested object with a ``__dict__``."""


class Slotted:
    """A nested object with ``__slots__`` only."""

    __slots__ = ("stat", "child", "items", "table", "rng", "extra", "__weakref__")


class Deep:
    """``out = w * x``; forward changes state at every depth, in place and by rebinding."""

    calls = [0]  # on the class: not layer state, so it counts across restores

    def __init__(self, tree, mode, at):
        self.tree, self.mode, self.at = tree, mode, at
        self.w = np.linspace(0.5, 1.5, 3)
        self.dw = None

    def nodes(self):
        node = self.tree
        while node is not None:
            yield node
            node = node.child

    def forward(self, x, train_flg=True):
        Deep.calls[0] += 1
        for node in self.nodes():
            node.stat += 0.8
            if hasattr(node, "items"):
                node.items.append(node.stat.copy())
            if hasattr(node, "table"):
                node.table["m"] = node.table["m"] + 1.0
                node.table["added"] = 1
            if hasattr(node, "rng"):
                node.rng.random(2)
            node.extra = float(x.sum())
        if self.mode in ("raise", "interrupt") and Deep.calls[0] >= self.at:
            if self.mode == "raise":
                raise RuntimeError("broken on this call")
            raise KeyboardInterrupt
        self.x = x
        return self.w * x

    def backward(self, dout):
        self.dw = np.sum(dout * self.x, axis=0)
        return dout * self.w * (1.5 if self.mode == "fail" else 1.0)


@st.composite
def deep_layers(draw):
    depth = draw(st.integers(1, 14))
    child = None
    for level in range(depth):
        node = draw(st.sampled_from([Plain, Slotted]))()
        node.stat = draw(arrays(np.float64, draw(st.integers(1, 3)),
                                elements=st.floats(-10, 10, allow_nan=False)))
        node.child = child
        if draw(st.booleans()):
            node.items = [np.arange(2.0), child]
        if draw(st.booleans()):
            node.table = {"m": np.zeros(2), "n": level}
        if draw(st.booleans()):
            node.rng = np.random.default_rng(level)
        child = node
    mode = draw(st.sampled_from(["pass", "fail", "raise", "interrupt"]))
    return Deep(child, mode, draw(st.integers(1, 40)))


@given(layer=deep_layers(), strategy=st.sampled_from(["elementwise", "projection"]))
def test_state_is_bit_identical_and_the_same_objects_after_any_outcome(layer, strategy):
    Deep.calls[0] = 0
    before = fingerprint(layer)
    global_rng = np.random.get_state()[1].copy()
    if layer.mode == "interrupt":
        with pytest.raises(KeyboardInterrupt):
            check_layer(layer, X, strategy=strategy)
    elif layer.mode == "raise":
        with pytest.raises(GradCheckInputError, match="broken on this call"):
            check_layer(layer, X, strategy=strategy)
    else:
        assert check_layer(layer, X, strategy=strategy).passed is (layer.mode == "pass")
    assert fingerprint(layer) == before
    assert np.array_equal(np.random.get_state()[1], global_rng)


# ---------------------------------------------------------------------------
# No depth or size limit
# ---------------------------------------------------------------------------

class Node:
    def __init__(self, child=None):
        self.child, self.running_mean = child, np.zeros(3)


class Nested:
    """A running mean nested ``depth`` objects deep, moved by 0.8 per forward."""

    def __init__(self, depth):
        self.root = None
        for _ in range(depth):
            self.root = Node(self.root)

    def deepest(self):
        node = self.root
        while node.child is not None:
            node = node.child
        return node

    def forward(self, x, train_flg=True):
        self.deepest().running_mean += 0.8
        return 2.0 * x

    def backward(self, dout):
        return 2.0 * dout


@pytest.mark.parametrize("depth", [9, 3000])
def test_state_nested_at_any_depth_is_restored(depth):
    layer = Nested(depth)
    running = layer.deepest().running_mean
    assert check_layer(layer, X).passed
    assert layer.deepest().running_mean is running and not running.any()


class ManyArrays:
    def __init__(self, n):
        self.stats = [np.zeros(1) for _ in range(n)]

    def forward(self, x, train_flg=True):
        for s in self.stats:
            s += 1.0
        return 2.0 * x

    def backward(self, dout):
        return 2.0 * dout


def test_more_than_ten_thousand_state_arrays_are_all_restored():
    layer = ManyArrays(12_000)
    before = fingerprint(layer)
    assert check_layer(layer, X[:2], sequence=False).passed
    assert fingerprint(layer) == before


class SlottedBatchStats:
    __slots__ = ("running_mean", "w", "dw", "x", "__cache")

    def __init__(self):
        self.running_mean, self.w, self.dw = np.zeros(3), np.linspace(0.5, 1.5, 3), None

    def forward(self, x, train_flg=True):
        self.running_mean = 0.9 * self.running_mean + 0.1 * x.mean(axis=0)
        self.x, self.__cache = x, x.sum()
        return self.w * x

    def backward(self, dout):
        self.dw = np.sum(dout * self.x, axis=0)
        return dout * self.w


def test_a_slots_layer_is_restored():
    layer = SlottedBatchStats()
    running = layer.running_mean
    assert check_layer(layer, X).passed
    assert layer.running_mean is running and not running.any()
    assert not hasattr(layer, "x") and not hasattr(layer, "_SlottedBatchStats__cache")
    assert layer.dw is None


class Containers:
    """State in a deque, a set and a ``random.Random``."""

    def __init__(self):
        self.history = collections.deque([np.zeros(2)], maxlen=5)
        self.seen = {"a"}
        self.rng = random.Random(3)

    def forward(self, x, train_flg=True):
        self.history.append(x.sum(axis=0))
        self.history[0] += 1.0
        self.seen.add(len(self.history))
        return 2.0 * x * (1.0 + 0.0 * self.rng.random())

    def backward(self, dout):
        return 2.0 * dout


def test_deques_sets_and_python_generators_are_restored():
    layer = Containers()
    before = fingerprint(layer)
    assert check_layer(layer, X).passed
    assert fingerprint(layer) == before


# ---------------------------------------------------------------------------
# Aliases: tied weights and views survive every code path
# ---------------------------------------------------------------------------

class Tied:
    """``out = x W + tanh(x W^T)`` with ``WT`` a view of ``W`` (tied weights)."""

    def __init__(self, D=3, dtype=np.float64):
        self.W = (np.random.default_rng(0).normal(size=(D, D)) / 4).astype(dtype)
        self.WT = self.W.T
        self.dW = None

    def forward(self, x, train_flg=True):
        self.x = x
        return x @ self.W + np.tanh(x @ self.WT)

    def backward(self, dout):
        g = dout * (1.0 - np.tanh(self.x @ self.WT) ** 2)
        self.dW = self.x.T @ dout + (self.x.T @ g).T
        return dout @ self.W.T + g @ self.WT.T


@pytest.mark.parametrize("options", [
    {}, {"strategy": "projection"}, {"method": "complex"}, {"precision": "native"},
    {"n_jobs": 2, "strategy": "elementwise"}, {"strategy": "grouped"}],
    ids=["default", "projection", "complex", "native", "n_jobs", "grouped"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tied_weights_survive_every_code_path(options, dtype, monkeypatch):
    from gradcheck.engine import parallel

    monkeypatch.setattr(parallel, "BREAK_EVEN", 0.0)  # the n_jobs path really uses workers
    D = 16 if "n_jobs" in options else 3  # 256 elements: evaluated in worker processes
    layer = Tied(D, dtype)
    x = np.random.default_rng(1).normal(size=(4, D)).astype(dtype)
    before = fingerprint(layer)
    report = check_layer(layer, x, **options)
    assert report.passed, str(report)
    assert fingerprint(layer) == before
    assert np.shares_memory(layer.W, layer.WT) and layer.WT.base is layer.W


def test_converted_copies_keep_views_views():
    storage = np.arange(12, dtype=np.float32)

    class Holder:
        pass
    h = Holder()
    h.W, h.row, h.Wt, h.other = storage.reshape(3, 4), storage[4:8], storage.reshape(3, 4).T, \
        np.ones(2, np.float32)
    snap = StateSnapshot(h)
    mapping = snap.converted([h.W], np.float64)
    W, row, Wt = mapping[id(h.W)], mapping[id(h.row)], mapping[id(h.Wt)]
    assert id(h.other) not in mapping  # not an alias of W: left alone
    assert W.dtype == row.dtype == Wt.dtype == np.float64
    W[1, 0] = 100.0
    assert row.tolist() == [100.0, 5.0, 6.0, 7.0] and Wt[0, 1] == 100.0
    assert storage[4] == 4.0  # the originals are untouched


def test_pickled_copies_keep_views_views():
    W = np.arange(6.0).reshape(2, 3)
    W2, WT, col = pickle.loads(dumps_shared((W, W.T, W[:, 1])))
    W2[0, 1] = -1.0
    assert WT[1, 0] == -1.0 and col[0] == -1.0
    assert np.array_equal(W2, np.where(W == 1.0, -1.0, W))


# ---------------------------------------------------------------------------
# Parameters that cannot be perturbed in place
# ---------------------------------------------------------------------------

class Scale:
    def __init__(self, w):
        self.w, self.dw = w, None

    def forward(self, x, train_flg=True):
        self.x = x
        return self.w * x

    def backward(self, dout):
        self.dw = np.sum(dout * self.x, axis=0) + 0.0 * self.w
        return dout * self.w


def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("w, match", [
    (_read_only(np.linspace(0.5, 1.5, 3)), "parameter 'w' is read-only"),
    (np.broadcast_to(np.array([1.5]), (3,)), "parameter 'w' is a broadcast view \\(stride 0 "
     "along axis 0\\)"),
    (np.lib.stride_tricks.as_strided(np.arange(1.0, 4.0), (3,), (0,)),
     "parameter 'w' is a broadcast view"),
    (_read_only(np.linspace(0.5, 1.5, 3).astype(np.float32)), "parameter 'w' is read-only"),
])
def test_parameters_that_cannot_be_perturbed_are_refused_by_name(w, match):
    layer = Scale(w)
    before = w.copy()
    with pytest.raises(GradCheckInputError, match=f"layer Scale, target 'w': {match}"):
        check_layer(layer, X)
    assert layer.w is w and np.array_equal(w, before)


_EXEC_SRC = """
import numpy as np
class Drop:
    def __init__(s): s.rng = np.random.default_rng(0)
    def forward(s, x, train_flg=True):
        s.mask = (s.rng.random(x.shape) > 0.5) * 2.0
        return x * s.mask
    def backward(s, d): return d * s.mask * FACTOR
"""


@pytest.mark.parametrize("factor, verdict", [(1.0, "PASS"), (1.5, "FAIL")])
def test_a_class_defined_by_exec_without_a_module_name_is_state_like_any(factor, verdict):
    """``exec(src, {})`` gives ``__module__ == 'builtins'``: its state is still restored."""
    from gradcheck import check_layer

    ns = {"FACTOR": factor}
    exec(_EXEC_SRC, ns)  # noqa: S102 - the point of the test
    assert ns["Drop"].__module__ == "builtins"
    report = check_layer(ns["Drop"](), np.random.default_rng(1).normal(size=(5, 4)))
    assert report.result("x").verdict == verdict, str(report)
    assert not [f for f in report.findings if f.failure], str(report)


_GLOBAL_RNG_OPS = {
    "rand": lambda: np.random.rand(),
    "randn": lambda: np.random.randn(),  # legacy Gaussian: fills or consumes the cache
    "randn3": lambda: np.random.randn(3),
    "seed": lambda: np.random.seed(7),
    "none": lambda: None,
}


@given(before=st.lists(st.sampled_from(sorted(_GLOBAL_RNG_OPS)), max_size=4),
       during=st.lists(st.sampled_from(sorted(_GLOBAL_RNG_OPS)), max_size=4))
@example(before=["randn"], during=["randn"])  # the cached Gaussian consumed, MT state unmoved
@example(before=["randn"], during=["seed"])
@example(before=[], during=["randn", "randn"])
def test_the_global_rng_counts_as_changed_exactly_when_its_state_differs(before, during):
    """A snapshot sees a change of numpy's global random state, Gaussian cache included,
    exactly when ``get_state()`` differs, and ``restore_all`` puts the whole state back."""
    saved = np.random.get_state()
    try:
        np.random.seed(3)
        for op in before:  # leaves a cached Gaussian or not
            _GLOBAL_RNG_OPS[op]()
        start = np.random.get_state()
        snap = StateSnapshot(object())
        for op in during:
            _GLOBAL_RNG_OPS[op]()
        now = np.random.get_state()
        differs = not (np.array_equal(now[1], start[1]) and now[2:] == start[2:])
        assert bool(snap.changed()) == differs
        snap.restore_all()
        after = np.random.get_state()
        assert np.array_equal(after[1], start[1]) and after[2:] == start[2:]
        assert not snap.changed()
    finally:
        np.random.set_state(saved)


@given(ops=st.lists(st.sampled_from(sorted(_GLOBAL_RNG_OPS) + ["snapshot"] * 3), max_size=10))
@example(ops=["snapshot", "randn", "snapshot", "randn", "snapshot"])  # cache filled, consumed
@example(ops=["randn", "snapshot", "randn", "snapshot", "seed", "snapshot"])
def test_every_snapshot_saves_the_global_rng_state_of_its_own_moment(ops):
    """Snapshots taken one after another (the last full read of the global state is reused
    while the raw MT state has not moved) each save the state of their own moment, Gaussian
    cache included: restoring any of them gives back that state exactly."""
    saved = np.random.get_state()
    try:
        np.random.seed(5)
        taken = []
        for op in ops + ["snapshot"]:
            if op == "snapshot":
                taken.append((StateSnapshot(object()), np.random.get_state()))
            else:
                _GLOBAL_RNG_OPS[op]()
        for snap, state in reversed(taken):
            np.random.randn()  # move the state (and its cache) away
            snap.restore_all()
            now = np.random.get_state()
            assert np.array_equal(now[1], state[1]) and now[2:] == state[2:]
    finally:
        np.random.set_state(saved)


class PyRandomDropout:
    """Dropout whose mask comes from Python's global ``random`` module."""

    def __init__(self):
        self.w = np.linspace(0.5, 1.5, 3)

    def forward(self, x, train_flg=True):
        self.x = x
        self.mask = np.array([[random.random() > 0.3 for _ in row] for row in x], float)
        return self.w * x * self.mask

    def backward(self, dout):
        self.dw = np.sum(dout * self.x * self.mask, axis=0)
        return dout * self.w * self.mask


def test_pythons_global_random_state_is_restored_for_every_call_and_afterwards():
    """A mask drawn with ``random.random()`` is the same in every call of the check (it
    passes), and the caller's ``random`` stream is where it was after the check."""
    saved = random.getstate()
    try:
        random.seed(1)
        before = random.getstate()
        assert check_layer(PyRandomDropout(), X).passed
        assert random.getstate() == before
    finally:
        random.setstate(saved)


def test_printing_a_report_leaves_pythons_random_stream_where_it_was():
    """The first ``str(report)`` imports rich, whose ``rich.style`` draws from the global
    ``random`` at import: the import puts the state back (a fresh process, rich not loaded)."""
    import subprocess
    import sys
    code = ("import random, numpy as np\n"
            "from gradcheck import check_layer\n"
            "class S:\n"
            "    def forward(self, x): self.x = x; return 2 * x\n"
            "    def backward(self, d): return 2 * d\n"
            "r = check_layer(S(), np.linspace(-1, 1, 6).reshape(2, 3))\n"
            "random.seed(3); before = random.getstate()\n"
            "str(r)\n"
            "import sys; assert 'rich' in sys.modules\n"
            "print(random.getstate() == before)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "True"


# ---------------------------------------------------------------------------
# Generators the layer uses without holding them: its class's, its module's
# ---------------------------------------------------------------------------

_MODULE_RNG = np.random.default_rng(0)  # the numpy-recommended replacement of np.random.*
_MODULE_RANDOMSTATE = np.random.RandomState(0)


class ModuleRngDropout:
    """Inverted dropout whose mask comes from a generator at the top of the module."""

    def __init__(self, broken=False):
        self.p, self.broken = 0.5, broken

    def draw(self, shape):
        return _MODULE_RNG.random(shape)

    def forward(self, x, train_flg=True):
        self.mask = (self.draw(x.shape) > self.p) / (1 - self.p)
        return x * self.mask

    def backward(self, dout):
        return dout / (1 - self.p) if self.broken else dout * self.mask


class ClassRngDropout(ModuleRngDropout):
    """The generator a class attribute (of a base: found through the MRO)."""

    rng = np.random.default_rng(0)

    def draw(self, shape):
        return type(self).rng.random(shape)


class SubClassRngDropout(ClassRngDropout):
    pass


class RandomStateDropout(ModuleRngDropout):
    def draw(self, shape):
        return _MODULE_RANDOMSTATE.rand(*shape)


class DefaultArgDropout(ModuleRngDropout):
    """The generator a default argument of forward (made once, at ``def``)."""

    def forward(self, x, train_flg=True, rng=np.random.default_rng(0)):
        self.mask = (rng.random(x.shape) > self.p) / (1 - self.p)
        return x * self.mask


def _closure_dropout():
    rng = random.Random(0)

    class ClosureDropout(ModuleRngDropout):
        def draw(self, shape):
            return np.array([rng.random() for _ in range(int(np.prod(shape)))]).reshape(shape)

    return ClosureDropout


ClosureDropout = _closure_dropout()


def _rng_states(layer):
    """The state of the generator ``layer``'s class draws from (found independently)."""
    cls = type(layer)
    gen = {ModuleRngDropout: _MODULE_RNG, RandomStateDropout: _MODULE_RANDOMSTATE,
           DefaultArgDropout: DefaultArgDropout.forward.__defaults__[-1],
           ClosureDropout: ClosureDropout.draw.__closure__[0].cell_contents}.get(
        cls, ClassRngDropout.rng)
    if isinstance(gen, np.random.Generator):
        return repr(gen.bit_generator.state)
    return repr(gen.get_state() if isinstance(gen, np.random.RandomState) else gen.getstate())


@pytest.mark.parametrize("cls", [ModuleRngDropout, ClassRngDropout, SubClassRngDropout,
                                 RandomStateDropout, DefaultArgDropout, ClosureDropout])
def test_a_generator_of_the_class_or_module_is_replayed_and_restored(cls):
    """A correct dropout drawing from a generator its instance does not hold (a module's
    ``rng``, a class attribute, a default argument, a closure) gets the same mask in every
    call of the check and PASSes; the generator is where it was afterwards; the twin whose
    backward forgets the mask FAILs."""
    layer = cls()
    before = _rng_states(layer)
    report = check_layer(layer, X)
    assert report.passed, report
    assert _rng_states(layer) == before
    assert not check_layer(cls(broken=True), X).passed
    assert _rng_states(layer) == before


def _helpers_module():
    import types
    mod = types.ModuleType("rng_helpers")
    exec("import numpy as np\n"
         "rng = np.random.default_rng(5)\n"
         "def uniform(shape):\n"
         "    return rng.random(shape)\n", mod.__dict__)
    return mod


_helpers = _helpers_module()
_helper_uniform = _helpers.uniform


class HelperFunctionDropout(ModuleRngDropout):
    """The draws made by a function of another module (``from helpers import uniform``),
    from that module's generator."""

    def draw(self, shape):
        return _helper_uniform(shape)


class HelperModuleDropout(ModuleRngDropout):
    """The generator read as another module's attribute (``helpers.rng.random(...)``)."""

    def draw(self, shape):
        return _helpers.rng.random(shape)


@pytest.mark.parametrize("cls", [HelperFunctionDropout, HelperModuleDropout])
def test_a_generator_of_another_module_the_layer_calls_into_is_replayed_and_restored(cls):
    before = repr(_helpers.rng.bit_generator.state)
    assert check_layer(cls(), X).passed
    assert repr(_helpers.rng.bit_generator.state) == before
    assert not check_layer(cls(broken=True), X).passed
    assert repr(_helpers.rng.bit_generator.state) == before


class BitGeneratorDropout(ModuleRngDropout):
    """A bare ``BitGenerator`` held, a ``Generator`` made over it for every mask."""

    def __init__(self, broken=False):
        super().__init__(broken)
        self.bits = np.random.PCG64(3)

    def draw(self, shape):
        return np.random.Generator(self.bits).random(shape)


def test_a_held_bit_generator_is_replayed_and_restored():
    layer = BitGeneratorDropout()
    before = repr(layer.bits.state)
    assert check_layer(layer, X).passed
    assert repr(layer.bits.state) == before
    assert not check_layer(BitGeneratorDropout(broken=True), X).passed


class SystemRandomDropout(ModuleRngDropout):
    """``random.SystemRandom`` has no state: it cannot be replayed, and is named."""

    def __init__(self, broken=False):
        super().__init__(broken)
        self.entropy = random.SystemRandom()

    def draw(self, shape):
        return np.array([self.entropy.random() for _ in range(int(np.prod(shape)))]).reshape(
            shape)


def test_a_system_random_is_named_as_what_cannot_be_replayed():
    """Held (or at module level) it crashed every check ("System entropy source does not
    have state"); now the nondeterminism finding names it."""
    report = check_layer(SystemRandomDropout(), X)
    msg = next(f.message for f in report.findings if f.kind == "forward-nondeterministic")
    assert "entropy: random.SystemRandom" in msg


_CONFIG = {"p": 0.5, "rng": np.random.default_rng(11)}


class ConfigDictDropout(ModuleRngDropout):
    """The generator in a module-level configuration dict (``CONFIG["rng"]``)."""

    def draw(self, shape):
        return _CONFIG["rng"].random(shape)


def test_a_generator_in_a_module_level_dict_the_layer_reads_is_replayed_and_restored():
    before = repr(_CONFIG["rng"].bit_generator.state)
    assert check_layer(ConfigDictDropout(), X).passed
    assert repr(_CONFIG["rng"].bit_generator.state) == before
    assert not check_layer(ConfigDictDropout(broken=True), X).passed


class BoundMethodDropout(ModuleRngDropout):
    """A generator's bound method held (``self.draw = rng.random``), the generator not."""

    def __init__(self, broken=False):
        super().__init__(broken)
        self.draw = np.random.default_rng(8).random


class PartialDropout(ModuleRngDropout):
    def __init__(self, broken=False):
        import functools
        super().__init__(broken)
        self.draw = functools.partial(np.random.default_rng(8).uniform, 0.0, 1.0)


@pytest.mark.parametrize("cls", [BoundMethodDropout, PartialDropout])
def test_a_held_method_of_a_generator_is_replayed_and_restored(cls):
    layer = cls()
    gen = getattr(layer.draw, "func", layer.draw).__self__
    before = repr(gen.bit_generator.state)
    assert check_layer(layer, X).passed
    assert repr(gen.bit_generator.state) == before
    assert not check_layer(cls(broken=True), X).passed


_MODULE_DRAW = np.random.default_rng(13).random  # a module-level method of a generator


class ModuleMethodDropout(ModuleRngDropout):
    def draw(self, shape):
        return _MODULE_DRAW(shape)


def test_a_module_level_method_of_a_generator_is_replayed_and_restored():
    before = repr(_MODULE_DRAW.__self__.bit_generator.state)
    assert check_layer(ModuleMethodDropout(), X).passed
    assert repr(_MODULE_DRAW.__self__.bit_generator.state) == before
    assert not check_layer(ModuleMethodDropout(broken=True), X).passed


class HelperModuleDropoutLast(ModuleRngDropout):
    """The method reading another module's generator comes after others of this module
    (``forward`` first): the module's globals scanned once must not skip it."""

    def forward(self, x, train_flg=True):
        return super().forward(x, train_flg)

    def draw(self, shape):
        return _helpers.rng.random(shape)


def test_every_method_is_followed_into_other_modules_not_only_the_first_of_a_module():
    before = repr(_helpers.rng.bit_generator.state)
    assert check_layer(HelperModuleDropoutLast(), X).passed
    assert repr(_helpers.rng.bit_generator.state) == before


def test_a_check_scans_its_classes_for_unheld_generators_once_and_forgets_them(monkeypatch):
    """The scan of a layer's classes, methods and modules for generators it does not hold
    is made once per check (not at each of its dozen snapshots) and not kept after it: a
    module-level generator rebound between two checks is the one the second replays."""
    import gradcheck.protocol.state as state

    calls = []
    real = state._scan
    monkeypatch.setattr(state, "_scan", lambda classes: calls.append(1) or real(classes))
    layer = ModuleRngDropout()
    assert check_layer(layer, X).passed
    assert len(calls) == 1 and state._CHECK.scans is None
    monkeypatch.setitem(globals(), "_MODULE_RNG", np.random.default_rng(7))
    before = _MODULE_RNG.bit_generator.state
    assert check_layer(layer, X).passed and len(calls) == 2
    assert _MODULE_RNG.bit_generator.state == before


class EveryGenerator:
    """Holds a generator of every replayed kind, and a ``random.SystemRandom``."""

    def __init__(self):
        self.gen = np.random.default_rng(1)
        self.bits = np.random.PCG64(2)
        self.legacy = np.random.RandomState(3)
        self.py = random.Random(4)
        self.entropy = random.SystemRandom()


def test_advance_moves_every_replayed_generator_and_restore_all_rewinds_them():
    # the sequence check's first call draws one ahead of the check's generators
    layer = EveryGenerator()
    snap = StateSnapshot(layer)
    kinds = {s.kind for s in snap.generators()}
    assert kinds == {"generator", "bitgenerator", "randomstate", "pyrandom", "globalrng"}
    assert all(s.kind != "entropy" for s in snap.generators())
    StateSnapshot.advance(snap.slots)
    assert {s.kind for s in snap.changed()} >= kinds
    snap.restore_all()
    assert not snap.changed()
