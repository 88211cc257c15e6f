"""The sequence check: bugs that live in state fail with findings of their own.

Every layer here passes the pure gradient check (each call the check makes is
"the first call"); a training loop's second call tells the wrong ones apart.
"""

import re
from pathlib import Path

import numpy as np
import pytest

from gradcheck import GradCheckInputError, LayerCallError, check_layer
from gradcheck.protocol.history import FINDING_KINDS
from gradcheck.validate import STRATEGIES
from layers import BatchNormalization, Dropout, Sequential, SoftmaxWithLoss

from conventions_layers import load_example

ROOT = Path(__file__).resolve().parents[1]
seed_bn = load_example("seed_batchnorm")

X = np.random.default_rng(1).normal(size=(5, 3))


def history(report):
    return [f for f in report.findings if f.kind in FINDING_KINDS]


def only_finding(report, kind):
    """The report's one sequence-check finding, which must be of ``kind`` and a failure."""
    found = history(report)
    assert len(found) == 1 and found[0].kind == kind and found[0].failure, str(report)
    assert not report.passed
    assert all(r.verdict != "FAIL" for r in report.results), \
        "a history bug is not a gradient mismatch"
    return found[0]


# ---------------------------------------------------------------------------
# Layers: a correct affine map, and the three wrong backwards of the issue
# ---------------------------------------------------------------------------

class Affine:
    def __init__(self):
        rng = np.random.default_rng(0)
        self.W, self.b = rng.normal(size=(3, 2)), rng.normal(size=2)
        self.dW = self.db = None

    def forward(self, x, train_flg=True):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW, self.db = self.x.T @ dout, dout.sum(axis=0)
        return dout @ self.W.T


class CachedDx(Affine):
    """Caches ``dx`` on the first backward and returns it forever after."""

    def __init__(self):
        super().__init__()
        self.cache = None

    def backward(self, dout):
        dx = super().backward(dout)
        if self.cache is None:
            self.cache = dx
        return self.cache


class PersistentBuffer(Affine):
    """Accumulates the weight gradient through a persistent buffer."""

    def __init__(self):
        super().__init__()
        self.buf = np.zeros_like(self.W)

    def backward(self, dout):
        dx = super().backward(dout)
        self.buf += self.dW
        self.dW = self.buf
        return dx


class CountsCalls(Affine):
    """Scales its gradient by the number of calls made so far."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def backward(self, dout):
        self.calls += 1
        return super().backward(dout) * self.calls


BUGS = {
    "cached-dx": (CachedDx, "x", "backward depends on history: the second call returned the "
                  "first call's dx (it reads `cache`, which an earlier backward wrote)"),
    "persistent-buffer": (PersistentBuffer, "W", "backward depends on history: dW accumulates "
                          "into a persistent buffer: the second call returned the first call's "
                          "dW plus its own (it reads `buf`, which an earlier backward wrote)"),
    "counts-calls": (CountsCalls, "x", "backward depends on history: dx is scaled by the number "
                     "of calls: 2x on the second call (it reads `calls`, which an earlier "
                     "backward wrote)"),
}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_history_bug_fails_with_its_named_finding(bug, strategy):
    cls, target, message = BUGS[bug]
    layer = cls()
    W = layer.W
    before = W.copy()
    finding = only_finding(check_layer(layer, X, strategy=strategy), "backward-history")
    assert finding.target == target and finding.message == message
    assert layer.W is W and np.array_equal(W, before)


class NoisyCountsCalls(CountsCalls):
    """A history bug in a layer with a random mask, drawn from its generator."""

    def __init__(self):
        super().__init__()
        self.rng = np.random.default_rng(5)

    def draw(self, shape):
        return self.rng.random(shape) > 0.3

    def forward(self, x, train_flg=True):
        self.mask = self.draw(x.shape)
        return super().forward(x * self.mask)

    def backward(self, dout):
        return super().backward(dout) * self.mask


class MovingCountsCalls(NoisyCountsCalls):
    """A history bug in a layer whose function moves with its state: every forward draws
    its mask from a generator seeded by a count of forward calls it keeps."""

    def __init__(self):
        super().__init__()
        self.forwards = 0

    def draw(self, shape):
        self.forwards += 1
        return np.random.default_rng(self.forwards).random(shape) > 0.3


class CachedTranspose(Affine):
    """Caches ``W.T`` on the first backward: stale once an optimizer step moves ``W``."""

    def __init__(self):
        super().__init__()
        self.WT = None

    def backward(self, dout):
        self.dW, self.db = self.x.T @ dout, dout.sum(axis=0)
        if self.WT is None:
            self.WT = self.W.T.copy()
        return dout @ self.WT


class PreviousMask:
    """Backward applies the previous forward's mask (the first backward its own): right
    on every call the check makes, wrong from the second call of a training loop on."""

    def __init__(self):
        self.rng = np.random.default_rng(5)
        self.mask = self.prev = None

    def forward(self, x, train_flg=True):
        self.prev, self.mask = self.mask, self.rng.random(x.shape) > 0.3
        return x * self.mask

    def backward(self, dout):
        return dout * (self.mask if self.prev is None else self.prev)


def test_the_first_call_draws_another_mask_than_the_second():
    # the generator is back at the check's state for the second call, and advanced for
    # the first: the two calls' masks differ, so a backward with the first one is caught
    finding = only_finding(check_layer(PreviousMask(), X), "backward-history")
    assert finding.target == "x"


@pytest.mark.parametrize("cls", [NoisyCountsCalls, MovingCountsCalls])
def test_a_history_bug_is_caught_where_the_function_moves_with_the_state(cls):
    # the generator is back at the check's state for the second call (the check's mask);
    # a mask seeded by a count moves: the second call's gradient is checked by finite
    # differences at the post-step state, not compared with the check's
    finding = only_finding(check_layer(cls(), X), "backward-history")
    assert finding.target == "x" and "scaled by the number of calls" in finding.message


def test_a_backward_that_caches_a_transposed_weight_is_caught_after_the_step():
    finding = only_finding(check_layer(CachedTranspose(), X), "backward-history")
    assert finding.target == "x" and "reads `WT`" in finding.message


def test_the_second_call_at_the_checks_point_costs_no_finite_differences():
    """A correct layer: its second call reproduces the verified output and gradient, so the
    sequence check makes its two calls and nothing more, a dropout layer too (its generator
    is back at the check's state); a layer whose function moves with its state (running
    statistics after a train-mode first call) adds one projection (2 calls) per target,
    and in eval mode the validation forward before the train step (1 call)."""
    def extra(layer, x):
        base = check_layer(layer, x, sequence=False)
        full = check_layer(layer, x)
        assert full.passed and not history(full), str(full)
        return full.forward_calls - base.forward_calls
    assert extra(Affine(), X) == 2
    assert extra(Dropout(0.3, seed=2), X) == 2
    base = check_layer(_bn(False), X, train_flg=False, sequence=False)
    full = check_layer(_bn(False), X, train_flg=False)
    assert full.passed and not history(full), str(full)
    assert full.forward_calls - base.forward_calls == 3 + 2 * 3


class CountsForwardCalls:
    """Eval mode scales by a running mean a train step moves; forward counts its calls in
    both modes and backward scales ``dx`` by the count."""

    def __init__(self):
        self.running, self.calls = np.ones(X.shape[1]), 0

    def forward(self, x, train_flg=True):
        self.calls += 1
        if train_flg:
            self.running = 0.9 * self.running + 0.1 * np.abs(x).mean(axis=0)
        self.used = self.running.copy()
        return x * self.used

    def backward(self, dout):
        return dout * self.used * self.calls


class ConstructionCache:
    """Eval mode divides by ``sqrt(running_var)``; backward uses ``1 / sqrt(running_var)``
    cached at construction: right until a train step moves the running variance."""

    def __init__(self):
        self.running_var = np.linspace(0.5, 1.5, X.shape[1])
        self.inv0 = 1.0 / np.sqrt(self.running_var)

    def forward(self, x, train_flg=True):
        self.train = train_flg
        if train_flg:
            self.running_var = 0.9 * self.running_var + 0.1 * x.var(axis=0)
            return x.copy()
        return x / np.sqrt(self.running_var)

    def backward(self, dout):
        return dout.copy() if self.train else dout * self.inv0


class ConstructionCacheAttribute(ConstructionCache):
    """The same, its mode held as an attribute (PyTorch's ``self.training``)."""

    def __init__(self):
        super().__init__()
        self.training = True

    def forward(self, x):
        return ConstructionCache.forward(self, x, self.training)


class TimeDropout:
    """Deep Learning from Scratch 2's ``TimeDropout``: its mode an attribute ``train_flg``,
    its eval-mode backward reading the mask of the last train-mode forward."""

    def __init__(self):
        self.mask, self.train_flg = None, True

    def forward(self, xs):
        if self.train_flg:
            self.mask = (np.random.rand(*xs.shape) > 0.5).astype(np.float32) * 2.0
            return xs * self.mask
        return xs

    def backward(self, dout):
        return dout * self.mask


class CountsEvalCalls(CountsForwardCalls):
    """Counts only its eval-mode forward calls; backward scales ``dx`` by that count."""

    def forward(self, x, train_flg=True):
        self.calls += not train_flg
        self.used = self.running.copy()
        return x * self.used


class LazyEvalCache(ConstructionCache):
    """Eval backward uses ``1 / sqrt(running_var)`` cached at the first eval-mode forward
    and never refreshed when training moves the running variance."""

    def __init__(self):
        super().__init__()
        self.inv0 = None

    def forward(self, x, train_flg=True):
        if not train_flg and self.inv0 is None:
            self.inv0 = 1.0 / np.sqrt(self.running_var)
        return super().forward(x, train_flg)


@pytest.mark.parametrize("cls", [CountsEvalCalls, LazyEvalCache])
def test_an_eval_check_validates_before_the_train_step(cls):
    """Validate, train, validate: an eval-mode forward before the train step, so a count
    of eval calls, or a cache the first eval forward makes, has moved at the second call."""
    finding = only_finding(check_layer(cls(), X, train_flg=False), "backward-history")
    assert finding.target == "x"


def test_a_mode_held_as_an_attribute_gets_a_train_step_before_an_eval_check():
    """``self.training`` / ``self.train_flg`` set for the train-mode first call and put back
    by the step: the eval backward is checked after a training step, as with a switch."""
    finding = only_finding(check_layer(ConstructionCacheAttribute(), X, train_flg=False),
                           "backward-history")
    assert finding.target == "x"
    layer = TimeDropout()
    np.random.seed(4)
    layer.forward(X)
    report = check_layer(layer, X, train_flg=False)
    assert [(f.kind, f.message) for f in history(report)] == [("stale-state", (
        "backward reads `mask`, which this eval-mode forward did not write: it is left over "
        "from an earlier train-mode forward"))]
    assert layer.train_flg is True


class StochasticRows:
    """A loss on probabilities that asserts its rows sum to 1 (numpy-ml's ``is_stochastic``)."""

    def forward(self, p, train_flg=True):
        assert np.allclose(p.sum(axis=1), 1.0), "rows must be probabilities"
        self.p = p
        return -np.log(p)

    def backward(self, dout):
        return -dout / self.p


def test_the_first_input_keeps_every_row_of_x():
    """The first call's rows are rows of ``x`` (reversed, one repeated): an input whose rows
    must be probabilities stays valid, and its batch statistics still differ."""
    p = np.random.default_rng(4).uniform(0.2, 1.0, size=(4, 3))
    p /= p.sum(axis=1, keepdims=True)
    report = check_layer(StochasticRows(), p)
    assert report.passed and not history(report), str(report)


class Module:
    """``torch.nn.Module``'s ``train()``/``eval()``: every child holds its own ``training``."""

    training = True

    def train(self, mode=True):
        self.training = mode
        for child in getattr(self, "children", []):
            child.train(mode)
        return self


class TreeScale(Module):
    """Eval mode divides by a running variance; its backward uses a copy made at
    construction (stale after a training step); train mode is the identity."""

    def __init__(self):
        self.training, self.rv = True, np.linspace(0.5, 1.5, X.shape[1])
        self.inv0 = 1.0 / np.sqrt(self.rv)

    def forward(self, x):
        if self.training:
            self.rv = 0.9 * self.rv + 0.1 * x.var(axis=0)
            return x.copy()
        return x / np.sqrt(self.rv)

    def backward(self, dout):
        return dout.copy() if self.training else dout * self.inv0


class Tree(Module):
    def __init__(self, *children):
        self.children, self.training = list(children), True

    def forward(self, x):
        for child in self.children:
            x = child.forward(x)
        return x

    def backward(self, dout):
        for child in reversed(self.children):
            dout = child.backward(dout)
        return dout


@pytest.mark.parametrize("evaluated", [False, True])
def test_a_module_tree_is_switched_and_stepped_child_by_child(evaluated):
    """Every sub-layer's own ``training`` is set for the check and for the train step, so
    an eval check of a tree (put in eval mode by the user or not) checks eval mode and
    catches an eval backward that a training step makes stale."""
    tree = Tree(TreeScale())
    if evaluated:
        tree.train(False)
    report = check_layer(tree, X, train_flg=False)
    assert only_finding(report, "backward-history").target == "x"
    assert tree.training is not evaluated and tree.children[0].training is not evaluated


def test_a_sub_layer_holding_its_own_mode_is_switched_under_a_forward_switch():
    """``Sequential.forward(x, train_flg)`` does not reach a child whose mode is its own
    attribute (TimeDropout's ``self.train_flg``): the child is set for the check too."""
    from gradcheck.layers import Affine as RefAffine, Sequential as RefSequential

    class Seen(TimeDropout):
        def forward(self, xs):
            modes.append(self.train_flg)
            return super().forward(xs)

        def backward(self, dout):
            return dout * self.mask if self.train_flg else dout.copy()

    modes = []
    rng = np.random.default_rng(0)
    net = RefSequential(RefAffine(rng.normal(size=(3, 2)), np.zeros(2)), Seen())
    report = check_layer(net, X, train_flg=False)
    assert report.passed, str(report)
    assert modes.count(False) > modes.count(True) > 0  # the check's calls, the train step
    assert [f.message for f in report.findings if f.kind == "mode-switch"] == [
        "forward takes the train/eval switch, but 1 of its sub-layers holds it as "
        "`train_flg`, set to False for the check (put back afterwards)"]
    assert net.layers[1].train_flg is True


class DxOncePerForward(Affine):
    """Computes ``dx`` at the first backward after a forward and returns it to every later
    one, whatever its dout (wrong for a layer whose output feeds two consumers)."""

    def forward(self, x, train_flg=True):
        self.dx = None
        return super().forward(x)

    def backward(self, dout):
        dx = super().backward(dout)  # dW and db for this dout
        if self.dx is None:
            self.dx = dx
        return self.dx


def test_a_second_backward_that_ignores_its_dout_fails():
    """``backward(2 dout)`` right after ``backward(dout)`` on one forward returned the first
    call's ``dx``: each alone is right, the pair is not."""
    finding = only_finding(check_layer(DxOncePerForward(), X), "backward-twice")
    assert finding.target == "x" and finding.message.startswith(
        "a second backward on the same forward, with twice its dout, returned a dx that is "
        "not twice the first") and finding.message.endswith(
        "though each alone is: it changes `dx`, which it reads")


@pytest.mark.parametrize("cls", [CountsForwardCalls, ConstructionCache])
def test_an_eval_backward_wrong_after_a_train_step_fails(cls):
    """The eval-mode second call runs on the running statistics the train step moved, and
    its gradient is checked there by finite differences: a counter of forward calls and a
    copy of the running variance made at construction both fail (putting the statistics
    back to skip those calls would pass both)."""
    finding = only_finding(check_layer(cls(), X, train_flg=False), "backward-history")
    assert finding.target == "x"


class PreviousBatchStd:
    """Train-mode normalisation whose backward uses the previous forward's batch std."""

    def __init__(self):
        self.prev = None

    def forward(self, x):
        inv = 1.0 / np.sqrt(x.var(axis=0) + 1e-5)
        self.xn, self.inv = (x - x.mean(axis=0)) * inv, inv if self.prev is None else self.prev
        self.prev = inv
        return self.xn

    def backward(self, dout):
        n = len(dout)
        return self.inv / n * (n * dout - dout.sum(axis=0) - self.xn * (dout * self.xn).sum(axis=0))


class StaleBias(Affine):
    """Backward uses the bias its first forward ever saw (a bias of zeros, as initialised)."""

    def __init__(self):
        super().__init__()
        self.b, self.b_first = np.zeros(2), None

    def forward(self, x, train_flg=True):
        if self.b_first is None:
            self.b_first = self.b.copy()
        self.x = x
        return np.tanh(x @ self.W + self.b)

    def backward(self, dout):
        da = dout * (1 - np.tanh(self.x @ self.W + self.b_first) ** 2)
        self.dW, self.db = self.x.T @ da, da.sum(axis=0)
        return da @ self.W.T


@pytest.mark.parametrize("cls", [PreviousBatchStd, StaleBias])
def test_the_first_call_moves_batch_statistics_and_a_bias_of_zeros(cls):
    """The first call's input is not a permutation of the batch (whose mean and variance
    are the check's own) and its move of the parameters moves zeros too: a backward
    reading the previous batch's std, or the bias of the first forward, fails."""
    report = check_layer(cls(), X)
    assert not report.passed and "backward-history" in [f.kind for f in history(report)]


class MomentumGradient(Affine):
    """Returns a momentum buffer as its weight gradient: ``v = 0.9 v + dW; dW = v``."""

    def __init__(self):
        super().__init__()
        self.v = np.zeros_like(self.W)

    def backward(self, dout):
        dx = super().backward(dout)
        self.v = 0.9 * self.v + self.dW
        self.dW = self.v
        return dx


def test_a_term_carried_from_an_earlier_backward_is_history_not_nonlinearity():
    """``backward(2 dout) != 2 backward(dout)`` through a buffer an earlier backward wrote
    is a history bug, named by the buffer, not a nonlinear backward."""
    report = check_layer(MomentumGradient(), X)
    finding = only_finding(report, "backward-history")
    assert finding.target == "W" and finding.message.endswith(
        "a term that does not scale with dout: it reads `v`, which an earlier backward wrote "
        "(a momentum or accumulation buffer, a gradient carried over from the last call)")


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_sequence_false_skips_the_sequence_check(bug):
    report = check_layer(BUGS[bug][0](), X, sequence=False)
    assert report.passed and not history(report)


def test_sequence_must_be_a_bool():
    with pytest.raises(GradCheckInputError, match="sequence must be True or False; got 'no'"):
        check_layer(Affine(), X, sequence="no")


# ---------------------------------------------------------------------------
# The seed's eval-mode backward: stale state, named
# ---------------------------------------------------------------------------

SEED_MESSAGE = ("backward reads `xn`, `xc`, `std`, `batch_size`, which this eval-mode forward "
                "did not write: they are left over from an earlier train-mode forward")


@pytest.mark.parametrize("shape", [(8, 6), (8, 2, 1, 3)])
def test_the_seeds_eval_backward_is_named_stale_state(shape):
    rng = np.random.default_rng(0)
    D = int(np.prod(shape[1:]))
    bn = seed_bn.BatchNormalization(rng.uniform(0.5, 1.5, D), rng.normal(size=D))
    for _ in range(3):
        bn.forward(rng.normal(1.0, 2.0, size=shape), True)
    x = rng.normal(1.0, 2.0, size=shape)
    assert not history(check_layer(bn, x, train_flg=True))
    report = check_layer(bn, x, train_flg=False)
    assert [(f.kind, f.message, f.failure) for f in history(report)] == [
        ("stale-state", SEED_MESSAGE, True)]
    assert not report.result("x").passed and not report.result("gamma").passed


def test_the_readme_shows_the_seeds_finding_and_the_cost_it_states():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"FAILURE: {SEED_MESSAGE}" in readme
    assert ("BatchNormalization on (32, 64), 2 forward and 3 backward calls in train mode "
            "(9 forward in eval mode, whose running statistics the training step moved) next "
            "to 118 forward calls of the default check" in readme)
    rng = np.random.default_rng(0)
    layer = BatchNormalization(rng.uniform(0.5, 1.5, 64), rng.normal(size=64))
    x = rng.normal(size=(32, 64))
    costs = []
    for train_flg in (True, False):
        base, full = (check_layer(layer, x, train_flg=train_flg, sequence=False),
                      check_layer(layer, x, train_flg=train_flg))
        costs.append((full.forward_calls - base.forward_calls,
                      full.backward_calls - base.backward_calls, base.forward_calls))
    assert costs[0] == (2, 3, 118) and costs[1][:2] == (9, 3)


def test_the_seeds_factory_as_the_cli_uses_it():
    bn, x = seed_bn.make()
    assert [f.message for f in history(check_layer(bn, x, train_flg=False))] == [SEED_MESSAGE]


def test_stale_state_inside_a_network_is_named_by_its_path():
    bn, x = seed_bn.make()
    found = history(check_layer(Sequential(bn), x, train_flg=False))
    assert [f.message for f in found] == [
        "backward reads `layers[0].xn`, `layers[0].xc`, `layers[0].std`, `layers[0].batch_size`, "
        "which this eval-mode forward did not write: they are left over from an earlier "
        "train-mode forward"]


class Registry(type):
    """A metaclass that registers every class made with it (the tracer must not)."""

    classes = []

    def __init__(cls, name, bases, namespace):
        super().__init__(name, bases, namespace)
        Registry.classes.append(cls)


class Untraceable(seed_bn.BatchNormalization, metaclass=Registry):
    """The seed's class with a custom metaclass: the tracer falls back to poisoning."""


def test_untraceable_layer_falls_back_to_poisoning():
    bn, x = seed_bn.make()
    bn.__class__ = Untraceable
    found = history(check_layer(bn, x, train_flg=False))
    assert Registry.classes == [Untraceable] and type(bn) is Untraceable
    assert len(found) == 1 and found[0].kind == "stale-state", found
    # without a trace there is no read order, and a rewrite with the same value
    # (batch_size = 8) is not seen as a write: the three arrays are named
    named, rest = found[0].message.split(", which ")
    assert sorted(named.split("reads ")[1].split(", ")) == ["`std`", "`xc`", "`xn`"]
    assert rest == "this eval-mode forward did not write: they are left over from an earlier " \
        "train-mode forward"


# ---------------------------------------------------------------------------
# Correct stateful layers never get a finding
# ---------------------------------------------------------------------------

class RecurrentCell:
    """``h = tanh(x Wx + h_prev Wh + b)``, keeping ``h`` between calls (one step of BPTT)."""

    def __init__(self, D=3, H=4, stale=False):
        rng = np.random.default_rng(2)
        self.Wx, self.Wh = rng.normal(size=(D, H)) / 2, rng.normal(size=(H, H)) / 2
        self.b = rng.normal(size=H)
        self.h, self.h_prev = rng.normal(size=(5, H)), None
        self.stale = stale

    def forward(self, x, train_flg=True):
        h = self.h if self.h is not None and self.h.shape[0] == x.shape[0] \
            else np.zeros((x.shape[0], self.b.size))
        if not self.stale or self.h_prev is None:  # the bug: keeps the first call's h_prev
            self.h_prev = h
        self.x = x
        self.h = np.tanh(x @ self.Wx + h @ self.Wh + self.b)
        return self.h

    def backward(self, dout):
        dt = dout * (1.0 - self.h ** 2)
        self.dWx, self.dWh, self.db = self.x.T @ dt, self.h_prev.T @ dt, dt.sum(axis=0)
        return dt @ self.Wx.T


def _bn(train_flg, D=3):
    rng = np.random.default_rng(3)
    return BatchNormalization(rng.uniform(0.5, 1.5, D), rng.normal(size=D), 0.9,
                              rng.normal(size=D), rng.uniform(0.5, 2.0, D))


CORRECT = {
    "batchnorm-train": (lambda: _bn(True), True),
    "batchnorm-eval": (lambda: _bn(False), False),
    "dropout-train": (lambda: Dropout(0.4, seed=5), True),
    "dropout-eval": (lambda: Dropout(0.4, seed=5), False),
    "recurrent": (RecurrentCell, True),
    "network": (lambda: Sequential(Affine(), Dropout(0.3, seed=1), _bn(True, 2)), True),
    "network-eval": (lambda: Sequential(Affine(), Dropout(0.3, seed=1), _bn(True, 2)), False),
}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_stateful_layers_get_no_finding(name, strategy):
    make, train_flg = CORRECT[name]
    x = X if name != "recurrent" else X[:, :3]
    report = check_layer(make(), x, train_flg=train_flg, strategy=strategy)
    assert report.passed and not history(report), str(report)


def test_a_recurrent_cell_that_keeps_a_stale_h_prev_fails_the_sequence_check():
    finding = only_finding(check_layer(RecurrentCell(stale=True), X), "backward-history")
    assert finding.target == "Wh" and re.fullmatch(
        r"backward depends on history: the second call's dWh fails the finite-difference "
        r"check at the check's own input and parameters after a training step moved the state "
        r"\(element \(\d, \d\): numerical -?[\d.e+-]+, analytic -?[\d.e+-]+\), although the "
        r"check's own call passes", finding.message), finding.message


class LossIgnoringDout:
    """A terminal loss whose backward assumes ``dout = 1``, as the book's losses do."""

    def forward(self, x):
        self.x = x
        return float(np.sum(x ** 2) / 2)

    def backward(self, dout=1.0):
        return self.x.copy()


def test_a_loss_whose_backward_ignores_dout_is_a_note_not_a_failure():
    report = check_layer(LossIgnoringDout(), X, dout=np.array(1.0))
    assert report.passed, str(report)
    (note,) = history(report)
    assert note.kind == "backward-nonlinear" and not note.failure
    assert "fine for a terminal loss layer" in note.message
    labels = np.random.default_rng(0).integers(0, 3, 5)
    assert not history(check_layer(SoftmaxWithLoss(labels), X))


# ---------------------------------------------------------------------------
# backward twice, linearity in dout, non-finite state
# ---------------------------------------------------------------------------

class FreesItsCache(Affine):
    """Zeroes its cache after use, so a second backward on the same forward is wrong."""

    def forward(self, x, train_flg=True):
        out = super().forward(x)
        self.x = x.copy()
        return out

    def backward(self, dout):
        dx = super().backward(dout)
        self.x *= 0.0
        return dx


def test_backward_zeroing_forwards_cache_is_right_once_per_forward():
    """A backward that zeroes the cache its forward wrote (consumes it, as PyTorch frees
    its graph): the gradient it returns is the verified one, a second backward without a
    forward returns another: a note naming the cache, not a failure."""
    report = check_layer(FreesItsCache(), X)
    found = [f for f in report.findings if f.kind == "backward-twice"]
    assert report.passed and found and not any(f.failure for f in found), str(report)
    assert {f.target for f in found} == {"W"}, found  # dx does not read x; db neither
    assert found[0].message.startswith("backward writes into forward's cache `x`, which it "
                                       "reads: right once per forward")


class ComputesDxInItsCache:
    """``y = x**2 / 2`` whose backward computes ``dx`` in the array forward cached (as the
    second book's ``TimeSoftmaxWithLoss``: ``dx = self.ys; dx[...] -= 1``)."""

    def forward(self, x):
        self.xs = x.copy()
        return x ** 2 / 2

    def backward(self, dout):
        dx = self.xs
        dx *= dout
        return dx


class CountsToo(ComputesDxInItsCache):
    """The same, and a counter its backward also keeps."""

    calls = 0

    def backward(self, dout):
        self.calls += 1
        return super().backward(dout)


def test_a_backward_that_computes_dx_in_forwards_cache_is_a_note():
    report = check_layer(ComputesDxInItsCache(), X)
    assert report.passed, str(report)
    (twice,) = [f for f in report.findings if f.kind == "backward-twice"]
    assert not twice.failure and twice.target == "x"
    assert twice.message == (
        "backward writes into forward's cache `xs`, which it reads: right once per forward, "
        "as a training loop calls it; a second backward without a forward returns another dx")


def test_a_backward_that_also_changes_other_state_it_reads_twice_fails():
    report = check_layer(CountsToo(), X)
    (twice,) = [f for f in report.findings if f.kind == "backward-twice"]
    assert twice.failure and not report.passed
    assert "`calls`" in twice.message


class ClipsDout(Affine):
    """Clips ``dout`` inside backward: right for small upstream gradients only."""

    def backward(self, dout):
        return super().backward(np.clip(dout, -1.5, 1.5))


def test_backward_must_be_linear_in_dout():
    dout = np.random.default_rng(4).uniform(-1.4, 1.4, size=(5, 2))
    report = check_layer(ClipsDout(), X, dout=dout)
    assert not report.passed and all(r.passed for r in report.results)
    found = history(report)
    assert [(f.kind, f.target, f.failure) for f in found] == [
        ("backward-nonlinear", t, True) for t in ("x", "W", "b")]
    assert found[0].message.startswith("backward is not linear in dout: backward(2 * dout) "
                                       "returned a dx that differs from 2 * backward(dout)")


class BesselBatchNorm(BatchNormalization):
    """Updates ``running_var`` with the unbiased variance: NaN on a batch of one."""

    def _forward(self, x, train_flg):
        running = self.running_var
        out = super()._forward(x, train_flg)
        if train_flg:
            N = x.shape[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                var = np.var(x, axis=0) * (N / np.float64(N - 1))
            self.running_var = self.momentum * running + (1 - self.momentum) * var
        return out


@pytest.mark.parametrize("train_flg", [True, False])
def test_a_forward_that_leaves_nan_state_is_a_finding_even_when_the_check_is_vacuous(train_flg):
    layer = BesselBatchNorm(np.ones(3), np.zeros(3), 0.9, np.zeros(3), np.ones(3))
    running = layer.running_var
    report = check_layer(layer, X[:1], train_flg=train_flg)
    finding = only_finding(report, "nonfinite-state") if train_flg else [
        f for f in history(report)][0]
    assert finding.kind == "nonfinite-state" and not report.passed
    assert finding.message.startswith("a train-mode forward on this input leaves NaN or inf in "
                                      "`running_var`, finite before the call")
    if train_flg:
        assert report.result("x").verdict == "INCONCLUSIVE"  # dx is identically 0 at N = 1
    assert layer.running_var is running and np.array_equal(running, np.ones(3))


# ---------------------------------------------------------------------------
# Errors on the second call, and the classes put back
# ---------------------------------------------------------------------------

def test_a_layer_that_raises_on_its_second_call_names_the_sequence_check():
    from test_bad_input_table import SecondCallRaises  # docs/bad-input.md, second-call-raises

    layer = SecondCallRaises()
    with pytest.raises(LayerCallError, match="in the sequence check") as info:
        check_layer(layer, X)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert type(layer) is SecondCallRaises and not hasattr(layer, "calls")
    assert check_layer(layer, X, sequence=False).passed


class Interrupted(Affine):
    calls = [0]

    def backward(self, dout):
        type(self).calls[0] += 1
        if type(self).calls[0] == 4:  # the sequence check's second backward, while traced
            raise KeyboardInterrupt
        return super().backward(dout)


def test_keyboard_interrupt_inside_a_traced_call_puts_the_class_back():
    layer = Interrupted()
    W = layer.W
    with pytest.raises(KeyboardInterrupt):
        check_layer(layer, X)
    assert type(layer) is Interrupted and layer.W is W and layer.dW is None
    assert not hasattr(layer, "x")


class InferenceOnly(Affine):
    """Refuses train mode: its eval-mode check still gets a sequence check."""

    def forward(self, x, train_flg=True):
        if train_flg:
            raise NotImplementedError("inference only")
        return super().forward(x)


def test_a_layer_without_a_train_mode_gets_an_eval_mode_first_call():
    report = check_layer(InferenceOnly(), X, train_flg=False)
    assert report.passed
    (note,) = history(report)
    assert note.kind == "sequence-note" and not note.failure
    assert "train-mode forward/backward raised (forward() raised NotImplementedError: " \
        "inference only); the first call was made in eval mode instead" in note.message
    cached = type("CachedInferenceOnly", (InferenceOnly, CachedDx), {})
    assert [f.kind for f in history(check_layer(cached(), X, train_flg=False))] == [
        "sequence-note", "backward-history"]


class FreesItsCacheForGood(Affine):
    """Deletes its cache after backward (as PyTorch frees the graph): it cannot run twice."""

    def backward(self, dout):
        dx = super().backward(dout)
        del self.x
        return dx


class Registered(CachedDx):
    """A class whose base registers its subclasses: tracing must leave the registry alone."""

    registry = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Registered.registry.append(cls)


def test_tracing_leaves_init_subclass_registries_alone():
    class Child(Registered):
        pass
    assert Registered.registry == [Child]
    found = history(check_layer(Child(), X))
    assert [f.kind for f in found] == ["backward-history"]  # traced: `cache` is named
    assert "`cache`" in found[0].message
    assert Registered.registry == [Child] and "__init_subclass__" in vars(Registered)
    assert "__init_subclass__" not in vars(Child)


def test_a_backward_that_frees_its_cache_is_a_note_not_a_failure():
    report = check_layer(FreesItsCacheForGood(), X)
    assert report.passed
    (note,) = history(report)
    assert note.kind == "sequence-note" and not note.failure
    assert note.message.startswith("backward called twice after one forward raised "
                                   "(backward() raised AttributeError:")


class KeptStateRNN:
    """An RNN cell that keeps its hidden state ``h`` across calls (zeros until the first)."""

    def __init__(self, D=3, H=4, N=5):
        rng = np.random.default_rng(0)
        self.Wx, self.Wh = rng.normal(size=(D, H)) * 0.5, rng.normal(size=(H, H)) * 0.5
        self.b, self.h = np.zeros(H), np.zeros((N, H))

    def forward(self, x):
        self.x, self.h_prev = x, self.h
        self.h = np.tanh(x @ self.Wx + self.h_prev @ self.Wh + self.b)
        return self.h

    def backward(self, dh):
        da = dh * (1 - self.h ** 2)
        self.dWx, self.dWh, self.db = self.x.T @ da, self.h_prev.T @ da, da.sum(0)
        return da @ self.Wx.T


def test_a_gradient_through_zero_kept_state_names_that_state():
    x = np.random.default_rng(1).normal(size=(5, 3))
    report = check_layer(KeptStateRNN(), x)
    assert report.result("Wh").verdict == "INCONCLUSIVE"
    (note,) = [f for f in report.findings if f.kind == "zero-state"]
    assert not note.failure and note.target == "Wh" and "(`h`)" in note.message
    warmed = KeptStateRNN()
    warmed.forward(np.random.default_rng(2).normal(size=(5, 3)))
    report = check_layer(warmed, x)
    assert report.passed and not [f for f in report.findings if f.kind == "zero-state"]


class ZeroStateGradRNN(KeptStateRNN):
    """``KeptStateRNN`` whose ``dWh`` is computed from zeros instead of ``h_prev``: right
    only where ``h_prev`` is zero (the check's point); optionally ``h`` starts as None."""

    def __init__(self, bad=True, unset=False):
        super().__init__()
        self.bad = bad
        if unset:
            self.h = None

    def forward(self, x):
        if self.h is None:
            self.h = np.zeros((x.shape[0], self.Wh.shape[0]))
        return super().forward(x)

    def backward(self, dh):
        dx = super().backward(dh)
        if self.bad:
            self.dWh = np.zeros_like(self.h_prev).T @ (dh * (1 - self.h ** 2))
        return dx


@pytest.mark.parametrize("unset", [False, True])
def test_a_gradient_that_vanished_at_the_check_is_verified_at_the_second_call(unset):
    x = np.random.default_rng(1).normal(size=(5, 3))
    report = check_layer(ZeroStateGradRNN(unset=unset), x, inconclusive="pass")
    assert report.result("Wh").verdict == "INCONCLUSIVE"
    (history,) = [f for f in report.findings if f.kind == "backward-history"]
    assert history.failure and history.target == "Wh" and not report.passed
    assert history.message.startswith("dWh is wrong at a second state: zero at the check's "
                                      "point")
    assert "although the check's own call passes" not in history.message
    right = check_layer(ZeroStateGradRNN(bad=False, unset=unset), x, inconclusive="pass")
    assert right.passed and not [f for f in right.findings if f.failure]
    (note,) = [f for f in right.findings if f.kind == "sequence-note"]
    assert note.target == "Wh" and "verified at a second state" in note.message


def test_the_zero_state_note_names_kept_state_that_began_as_none():
    x = np.random.default_rng(1).normal(size=(5, 3))
    report = check_layer(ZeroStateGradRNN(bad=False, unset=True), x)
    (note,) = [f for f in report.findings if f.kind == "zero-state"]
    assert not note.failure and note.target == "Wh" and "(`h`)" in note.message
    assert "None (not set yet" in note.message


class CachesFirstInput:
    """Parameters created by the first forward, and a forward that keeps only its first ``x``."""

    def __init__(self, eager=False):
        self.W = np.random.default_rng(0).normal(size=(3, 2)) if eager else None
        self.x = None

    def forward(self, x):
        if self.W is None:
            self.W = np.random.default_rng(0).normal(size=(x.shape[1], 2))
        if self.x is None:  # the bug: every later call's backward uses the first input
            self.x = x
        return x @ self.W

    def backward(self, dout):
        self.dW = self.x.T @ dout
        return dout @ self.W.T


@pytest.mark.parametrize("eager", [True, False])
def test_a_forward_that_caches_its_first_input_fails_also_when_it_creates_w(eager):
    report = check_layer(CachesFirstInput(eager), X)
    assert not report.passed, str(report)
    history = [f for f in report.findings if f.kind == "backward-history" and f.failure]
    # eager: the pure check passes and the sequence check names it; created by forward: the
    # creating call's input is not the check's, so the pure check already fails on W
    assert (history and history[0].target == "W") if eager else \
        report.result("W").verdict == "FAIL"
