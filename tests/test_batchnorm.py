"""BatchNormalization (the seed's convention) under check_layer: correct passes, bugs fail."""

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from broken_layers import BROKEN, SeedBatchNormalization
from gradcheck import check_layer
from gradcheck.errors import LayerCallError
from layers import BatchNormalization

shapes = st.one_of(
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=9),
    st.tuples(st.integers(2, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
)


@st.composite
def bn_cases(draw, shape_strategy=shapes):
    shape = draw(shape_strategy)
    D = int(np.prod(shape[1:]))
    elems = st.floats(-3.0, 3.0, allow_nan=False, allow_subnormal=False)
    x = draw(hnp.arrays(np.float64, shape, elements=elems))
    # a column with spread far below sqrt(eps_bn) is a different (ill-conditioned) regime,
    # tested on its own below; here each feature has a spread of at least 0.1
    flat = x.reshape(shape[0], -1)
    spread = flat.max(axis=0) - flat.min(axis=0)
    flat[:, spread < 0.1] += np.linspace(-0.5, 0.5, shape[0])[:, None]
    gamma = draw(hnp.arrays(np.float64, D, elements=st.floats(0.2, 2.0)))
    beta = draw(hnp.arrays(np.float64, D, elements=st.floats(-1.0, 1.0)))
    rmean = draw(hnp.arrays(np.float64, D, elements=st.floats(-1.0, 1.0)))
    rvar = draw(hnp.arrays(np.float64, D, elements=st.floats(0.1, 3.0)))
    seed = draw(st.integers(0, 2**16))
    return BatchNormalization(gamma, beta, 0.9, rmean, rvar), flat.reshape(shape), seed


@given(bn_cases(), st.booleans())
def test_correct_batchnorm_passes(case, train_flg):
    bn, x, seed = case
    report = check_layer(bn, x, train_flg=train_flg, seed=seed)
    assert [r.name for r in report.results] == ["x", "gamma", "beta"]
    if train_flg and len(x) == 2:
        # a batch of two normalises every feature to about +-1 whatever x is: the x
        # gradient is of the order of eps / spread**3, and may be too small to resolve
        # (INCONCLUSIVE, never FAIL)
        assert {r.name: r.verdict for r in report.results}["x"] in ("PASS", "INCONCLUSIVE")
        assert all(r.passed for r in report.results if r.name != "x"), str(report)
        return
    assert report.passed, str(report)


@given(bn_cases(), st.booleans())
def test_check_leaves_everything_bit_identical(case, train_flg):
    bn, x, seed = case
    bn.dgamma = np.full_like(bn.gamma, 7.0)  # a gradient from an "earlier" step
    before = {k: (v, v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(bn).items()}
    x_before = x.copy()
    dout = np.random.default_rng(seed).normal(size=x.shape)
    dout_before = dout.copy()
    check_layer(bn, x, train_flg=train_flg, dout=dout)
    assert vars(bn).keys() == before.keys()
    for k, (obj, saved) in before.items():
        assert getattr(bn, k) is obj, k
        if isinstance(obj, np.ndarray):
            assert obj.tobytes() == saved.tobytes(), k
    assert x.tobytes() == x_before.tobytes() and dout.tobytes() == dout_before.tobytes()


def test_running_statistics_created_lazily_are_removed_again():
    bn = BatchNormalization(np.ones(3), np.zeros(3))
    check_layer(bn, np.random.default_rng(0).normal(size=(4, 3)))
    assert bn.running_mean is None and bn.running_var is None


@pytest.mark.parametrize("train_flg", [True, False])
def test_batch_size_one_is_inconclusive_not_failed(train_flg):
    bn = BatchNormalization(np.full(4, 1.3), np.full(4, 0.2), 0.9, np.zeros(4), np.ones(4))
    x = np.array([[0.3, -1.0, 2.0, 0.5]])
    report = check_layer(bn, x, train_flg=train_flg)
    if train_flg:  # x - mean(x) == 0: the output does not depend on x (nor on gamma)
        for name in ("x", "gamma"):
            r = report.result(name)
            assert r.verdict == "INCONCLUSIVE" and r.vacuous, str(report)
            assert "indistinguishable from zero" in r.inconclusive and "N >= 2" in r.inconclusive
        assert report.result("beta").verdict == "PASS"
        assert not report.passed  # a batch of one never passes silently
        assert check_layer(bn, x, train_flg=train_flg, inconclusive="pass").passed
    else:
        assert report.passed, str(report)
        assert not report.result("x").vacuous


@pytest.mark.parametrize("shape", [(8, 5), (5, 2, 2, 3)])
def test_constant_column_passes(shape):
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape)
    flat = x.reshape(shape[0], -1)
    flat[:, 1] = 0.7
    D = flat.shape[1]
    bn = BatchNormalization(rng.uniform(0.5, 1.5, D), rng.normal(size=D))
    report = check_layer(bn, x)
    assert report.passed, str(report)


def test_dout_of_ones_is_reported_vacuous():
    rng = np.random.default_rng(0)
    bn = BatchNormalization(rng.uniform(0.5, 1.5, 5), rng.normal(size=5))
    report = check_layer(bn, rng.normal(size=(6, 5)), dout=np.ones((6, 5)))
    assert report.result("x").vacuous
    assert report.result("x").verdict == "INCONCLUSIVE"


def test_default_dout_is_random_not_ones():
    rng = np.random.default_rng(0)
    bn = BatchNormalization(rng.uniform(0.5, 1.5, 5), rng.normal(size=5))
    report = check_layer(bn, rng.normal(size=(6, 5)))
    assert not report.result("x").vacuous
    assert np.max(np.abs(report.result("x").analytic)) > 0.1


def _make(cls, shape, rng, train_flg):
    D = int(np.prod(shape[1:]))
    layer = cls(rng.uniform(0.5, 1.5, D), rng.normal(size=D), 0.9,
                rng.normal(size=D), rng.uniform(0.5, 2.0, D))
    return layer, rng.normal(0.2, 1.3, size=shape)


@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 2, 2)])
@pytest.mark.parametrize("bug", sorted(BROKEN))
def test_broken_variant_fails_on_the_right_target(bug, shape):
    cls, target, modes = BROKEN[bug]
    for train_flg in modes:
        layer, x = _make(cls, shape, np.random.default_rng(1), train_flg)
        report = check_layer(layer, x, train_flg=train_flg)
        assert not report.passed
        assert not report.result(target).passed, str(report)
        assert not report.findings or all(not f.failure for f in report.findings)


@pytest.mark.parametrize("bug", sorted(BROKEN))
def test_broken_variant_passes_in_the_mode_without_the_bug(bug):
    cls, target, modes = BROKEN[bug]
    for train_flg in {True, False} - set(modes):
        layer, x = _make(cls, (6, 4), np.random.default_rng(1), train_flg)
        assert check_layer(layer, x, train_flg=train_flg).passed


@pytest.mark.parametrize("shape", [(8, 6), (8, 2, 1, 3)])
def test_the_seeds_eval_backward_is_caught(shape):
    rng = np.random.default_rng(0)
    D = int(np.prod(shape[1:]))
    seed_bn = SeedBatchNormalization(rng.uniform(0.5, 1.5, D), rng.normal(size=D))
    for _ in range(3):
        seed_bn.forward(rng.normal(1.0, 2.0, size=shape), True)
    x = rng.normal(1.0, 2.0, size=shape)
    assert check_layer(seed_bn, x, train_flg=True).passed
    report = check_layer(seed_bn, x, train_flg=False)
    assert not report.result("x").passed and not report.result("gamma").passed
    assert report.result("beta").passed


def test_the_seeds_eval_backward_without_a_train_call_is_a_clear_error():
    seed_bn = SeedBatchNormalization(np.ones(3), np.zeros(3))
    with pytest.raises(LayerCallError, match="layer BatchNormalization.*backward.*xn"):
        check_layer(seed_bn, np.random.default_rng(0).normal(size=(4, 3)), train_flg=False)


@pytest.mark.parametrize("method", ["forward", "central", "central4", "richardson"])
def test_every_method_passes_correct_and_fails_broken(method):
    rng = np.random.default_rng(5)
    layer, x = _make(BatchNormalization, (6, 3), rng, True)
    assert check_layer(layer, x, method=method).passed
    broken, x = _make(BROKEN["no-mean-term"][0], (6, 3), rng, True)
    assert not check_layer(broken, x, method=method).result("x").passed


def test_accuracy_of_central_differences_on_batchnorm():
    """Max error relative to the gradient's scale, against the exact (analytic) gradient:
    below 1e-8, and never above the resolution the check states."""
    rng = np.random.default_rng(11)
    for shape in [(32, 8), (4, 3, 5, 5)]:
        for train_flg in (True, False):
            layer, x = _make(BatchNormalization, shape, rng, train_flg)
            for r in check_layer(layer, x, train_flg=train_flg).results:
                assert r.max_rel_error < 1e-8, (shape, train_flg, r.name, r.max_rel_error)
                assert r.max_abs_error <= r.resolution, (shape, train_flg, r.name)


def test_float32_layer_is_checked_in_float64_by_default_and_natively_on_request():
    rng = np.random.default_rng(2)
    bn = BatchNormalization(rng.uniform(0.5, 1.5, 4).astype(np.float32),
                            rng.normal(size=4).astype(np.float32))
    x = rng.normal(size=(8, 4)).astype(np.float32)
    gamma = bn.gamma
    report = check_layer(bn, x)
    assert report.passed, str(report)
    assert report.dtype == "float64" and report.input_dtype == "float32"
    assert any("upcast" in w for w in report.warnings)
    assert report.result("x").rtol < 1e-7
    assert bn.gamma is gamma and bn.gamma.dtype == np.float32 and bn.running_mean is None
    native = check_layer(bn, x, precision="native")
    assert native.passed, str(native)
    # native: judged at float32's precision, which the measured noise shows
    assert native.dtype == "float32"
    assert native.result("x").noise > 1e5 * report.result("x").noise
    assert native.result("x").relative_resolution > 1e3 * report.result("x").relative_resolution
    broken = BROKEN["no-mean-term"][0](bn.gamma, bn.beta)
    assert not check_layer(broken, x).result("x").passed
    assert not check_layer(broken, x, precision="native").result("x").passed


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_an_input_drawn_with_the_checks_seed_is_not_its_dout(seed):
    """``x = default_rng(seed).normal(...)`` checked with the same ``seed``: the default
    ``dout`` comes from a stream of its own. Were it ``x`` itself, the normalised output
    would be an affine function of ``dout`` per feature, and the gradient with respect to
    ``x`` zero: a check that could catch nothing."""
    x = np.random.default_rng(seed).normal(size=(8, 3))
    bn = BatchNormalization(np.ones(3), np.zeros(3))
    report = check_layer(bn, x, train_flg=True, seed=seed)
    assert report.passed, str(report)
    assert np.max(np.abs(report.result("x").analytic)) > 1e-2


def test_a_fresh_seed_batchnorm_in_eval_mode_says_backward_reads_what_only_train_mode_writes():
    """No train-mode forward ever ran: the eval-mode backward's AttributeError for ``xn``
    says that this eval-mode forward does not write it and a train-mode one does."""
    bn = SeedBatchNormalization(np.ones(4), np.zeros(4))
    x = np.random.default_rng(0).normal(size=(5, 4))
    with pytest.raises(LayerCallError) as info:
        check_layer(bn, x, train_flg=False)
    text = str(info.value)
    assert "backward reads 'xn', which this eval-mode forward does not write" in text, text
    assert "(a train-mode forward does)" in text and "train-mode forward's cache" in text
    assert isinstance(info.value.__cause__, AttributeError) and not hasattr(bn, "xn")


class BookDropout:
    """Deep Learning from Scratch's ``Dropout``: ``self.mask = None`` until a train-mode
    forward sets it, which its eval-mode backward reads."""

    def __init__(self):
        self.mask = None

    def forward(self, x, train_flg=True):
        if train_flg:
            self.mask = np.random.rand(*x.shape) > 0.5
            return x * self.mask
        return x * 0.5

    def backward(self, dout):
        return dout * self.mask


class AttributeModeDropout(BookDropout):
    """The same, its mode held as ``self.train_flg`` (the second book's ``TimeDropout``)."""

    def __init__(self):
        super().__init__()
        self.train_flg = True

    def forward(self, x):
        return BookDropout.forward(self, x, self.train_flg)


@pytest.mark.parametrize("cls", [BookDropout, AttributeModeDropout])
def test_a_fresh_layer_in_eval_mode_names_the_none_cache_backward_reads(cls):
    """The backward's TypeError on ``None`` names the attribute that is ``None`` until a
    train-mode forward sets it, as the AttributeError of an unset one does; with the mode
    a switch of ``forward`` or an attribute."""
    with pytest.raises(LayerCallError) as info:
        check_layer(cls(), np.ones((3, 4)), train_flg=False)
    assert str(info.value).endswith(
        "(backward reads `mask`, None until a train-mode forward sets it; this eval-mode "
        "forward does not: an eval-mode backward that depends on the last train-mode "
        "forward's cache)")
    assert isinstance(info.value.__cause__, TypeError)


def test_a_none_cache_inside_a_network_is_named_by_its_path():
    from gradcheck.layers import Affine, Sequential

    net = Sequential(Affine(np.ones((4, 3)), np.zeros(3)), BookDropout())
    with pytest.raises(LayerCallError) as info:
        check_layer(net, np.ones((3, 4)), train_flg=False)
    assert "(backward reads `layers[1].mask`, None until a train-mode forward sets it;" in str(
        info.value)


def test_a_backward_reading_what_no_forward_writes_names_it_without_a_mode():
    """A layer with one mode: the AttributeError names the attribute, no mode; a name no
    method ever assigns (a typo: self._gard, np.dott) gets no such explanation."""

    class Forgets:
        def configure(self):  # the only writer of scale, never called
            self.scale = 2.0

        def forward(self, x):
            return 2 * x

        def backward(self, dout):
            return dout * self.scale

    with pytest.raises(LayerCallError, match="backward reads 'scale', which this forward does "
                                             r"not write\)"):
        check_layer(Forgets(), np.ones((2, 3)))

    class Typo(Forgets):
        def backward(self, dout):
            return dout * self._gard

    class NumpyTypo(Forgets):
        def backward(self, dout):
            return np.dott(dout, 2.0)

    for layer in (Typo(), NumpyTypo()):
        with pytest.raises(LayerCallError) as info:
            check_layer(layer, np.ones((2, 3)))
        assert "which this forward does not write" not in str(info.value)


def test_a_misspelt_attribute_gets_the_closest_name_it_could_be():
    """A name nothing assigns is a typo: the error names the closest attribute the layer
    has or its methods assign (``self.cache``, written only by forward and so gone again
    when the check restores the layer), or the module's (``numpy.dot``); no suggestion
    where none is close."""

    class Cached:
        def forward(self, x):
            self.cache = x
            return 2 * x

        def backward(self, dout):
            return dout * 2 + 0 * self.chache

    class NumpyTypo(Cached):
        def forward(self, x):
            return np.dott(x, 2.0)

    class FarOff(Cached):
        def backward(self, dout):
            return dout * self.zzqxv

    cases = [(Cached(), "backward", "(no method of Cached assigns self.chache: a misspelt "
                                    "name? did you mean self.cache?)"),
             (NumpyTypo(), "forward", "(numpy has no attribute 'dott': a misspelt name? did "
                                      "you mean numpy.dot?)")]
    for layer, method, hint in cases:
        with pytest.raises(LayerCallError) as info:
            check_layer(layer, np.ones((2, 3)))
        assert str(info.value).startswith(f"layer {type(layer).__name__}")
        assert f"{method}() raised AttributeError" in str(info.value)
        assert str(info.value).endswith(hint), str(info.value)
    with pytest.raises(LayerCallError) as info:
        check_layer(FarOff(), np.ones((2, 3)))
    assert "did you mean" not in str(info.value)
