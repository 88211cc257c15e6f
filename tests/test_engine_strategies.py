"""Every method and strategy of the engine on BatchNormalization and small layers."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from broken_layers import BROKEN
from gradcheck.engine.noise import POINTS
from gradcheck.engine.steps import SAMPLE
from gradcheck import GradCheckInputError, check_layer
from gradcheck.validate import METHODS, STRATEGIES
from layers.batchnorm import BatchNormalization
from gradcheck.gate.suite import make_batchnorm

CASES = [((6, 5), True), ((6, 5), False), ((3, 2, 2, 2), True), ((3, 2, 2, 2), False)]


def _bn(shape, train_flg, cls=BatchNormalization, seed=0):
    layer, x = make_batchnorm(shape, np.random.default_rng(seed), train_flg)
    if cls is not BatchNormalization:
        layer = cls(layer.gamma, layer.beta, 0.9, layer.running_mean, layer.running_var)
    return layer, x


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("shape, train_flg", CASES)
def test_correct_batchnorm_passes_every_strategy(strategy, shape, train_flg):
    layer, x = _bn(shape, train_flg)
    report = check_layer(layer, x, train_flg=train_flg, strategy=strategy)
    assert report.passed, str(report)
    # auto: each target grouped where a structure was found, else one element at a time
    used = {"auto": ("grouped", "elementwise")}.get(strategy, (strategy,))
    assert all(r.strategy in used for r in report.results)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("bug", sorted(BROKEN))
def test_broken_batchnorm_fails_every_strategy_on_the_right_target(strategy, bug):
    cls, target, modes = BROKEN[bug]
    for train_flg in modes:
        layer, x = _bn((6, 4), train_flg, cls)
        report = check_layer(layer, x, train_flg=train_flg, strategy=strategy)
        assert not report.result(target).passed, str(report)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_batchnorm_4d_eval_and_train(method):
    for train_flg in (True, False):
        layer, x = _bn((3, 2, 2, 2), train_flg)
        assert check_layer(layer, x, train_flg=train_flg, method=method).passed
        broken, x = _bn((3, 2, 2, 2), train_flg, BROKEN["dgamma-from-centred"][0])
        assert not check_layer(broken, x, train_flg=train_flg, method=method) \
            .result("gamma").passed


def test_accuracy_targets_and_error_estimates():
    """Central <= 1e-9, extrapolated <= 1e-10 (relative to the gradient's scale), and the
    per-element error estimate bounds the actual error on >= 99 % of elements."""
    for shape in [(32, 16), (4, 3, 5, 5)]:
        for method, target in [("central", 1e-9), ("richardson", 1e-11), ("central4", 1e-10),
                               ("complex", 1e-14)]:
            layer, x = _bn(shape, True)
            r = check_layer(layer, x, method=method, wrt=["x"]).result("x")
            assert r.max_rel_error <= target, (shape, method, r.max_rel_error)
            err = np.abs(r.numerical - r.analytic)
            assert np.mean(err <= r.error_estimates) >= 0.99
            # the estimate is the engine's own bound: never looser than the tolerance applied
            assert np.all(r.error_estimates <= r.tolerances * (1 + 1e-12))


def test_jacobian_reports_output_and_input_index_of_the_worst_entry():
    layer, x = _bn((4, 3), True, BROKEN["no-mean-term"][0])
    report = check_layer(layer, x, strategy="jacobian", wrt=["x"])
    r = report.result("x")
    assert not r.passed
    assert r.numerical.shape == (12, 12) and r.analytic.shape == (12, 12)
    assert len(r.worst_output_index) == 2 and len(r.worst_index) == 2
    o = np.ravel_multi_index(r.worst_output_index, (4, 3))
    i = np.ravel_multi_index(r.worst_index, (4, 3))
    assert r.worst_numerical == r.numerical[o, i] and r.worst_analytic == r.analytic[o, i]
    assert report.backward_calls >= 2 + 12


def test_jacobian_refuses_a_size_that_would_take_hours():
    bn = BatchNormalization(np.ones(4096), np.zeros(4096))
    with pytest.raises(GradCheckInputError, match="jacobian.*hours.*projection"):
        check_layer(bn, np.ones((1024, 4096)), strategy="jacobian")


def test_projection_cost_does_not_grow_with_the_input():
    calls = []
    for shape in [(8, 4), (64, 128)]:
        layer, x = _bn(shape, True)
        report = check_layer(layer, x, strategy="projection", probes=4, wrt=["x"], sequence=False)
        assert report.passed
        calls.append(report.forward_calls)
    # a noise table and a step tuning per target, two calls per probe, one forward for
    # each extra probe's backward and two for the analytic gradient's rounding (backward
    # at two scales of dout): the same for both sizes
    assert calls[0] == calls[1] <= POINTS + 2 * 2 * SAMPLE + 2 * 4 + (4 - 1) + 2 + 2


class OneElementOff(BatchNormalization):
    """dx wrong by 1 % in a single element."""

    def _backward(self, dout):
        dx = super()._backward(dout)
        dx[5, 3] *= 1.01
        return dx


def test_projection_locates_a_single_wrong_element_by_bisection():
    layer, x = _bn((64, 32), True, OneElementOff)
    report = check_layer(layer, x, strategy="projection", probes=4, wrt=["x"], sequence=False)
    r = report.result("x")
    assert not r.passed
    assert [loc[0] for loc in r.located] == [(5, 3)]
    elementwise = check_layer(layer, x, wrt=["x"], strategy="elementwise").forward_calls
    assert report.forward_calls < elementwise / 10


def test_sampled_checks_m_elements_and_states_the_detection_probability():
    """20 of 128 elements checked rule nothing out about the other 108: INCONCLUSIVE, the
    reason saying so (its resolution holds for the sampled elements only); accepted with
    ``inconclusive="pass"``."""
    layer, x = _bn((16, 8), True)
    report = check_layer(layer, x, strategy="sampled", samples=20)
    r = report.result("x")
    assert r.verdict == "INCONCLUSIVE" and r.n_checked == 20
    assert np.isnan(r.numerical).sum() == 128 - 20 and r.checked_fraction == 20 / 128
    assert "only 20 of 128 elements were checked" in r.inconclusive
    assert "probability 0.84" in r.inconclusive  # a single wrong element escapes
    assert any("probability 0.16" in w for w in report.warnings)
    assert "(on 20 of 128 elements only)" in " ".join(str(report).split())  # unwrapped
    assert check_layer(layer, x, strategy="sampled", samples=20, inconclusive="pass").passed


def test_a_sampled_only_inconclusive_hints_at_checking_every_element():
    """Left unchecked by ``strategy="sampled"``, a correct layer's hint names the remedy
    (every element, ``samples=`` the target's size, or ``inconclusive="pass"``), not
    another input or dout; ``samples=`` the target's size PASSes."""
    layer, x = _bn((16, 8), True)
    text = " ".join(str(check_layer(layer, x, strategy="sampled", samples=20)).split())
    assert "hint: only a sample of the elements of x was checked" in text
    assert "samples= at least the target's size" in text and "inconclusive='pass'" in text
    assert "change the input or dout" not in text
    assert check_layer(layer, x, strategy="sampled", samples=128).passed


def test_a_sampled_check_accepted_as_passing_does_not_suggest_accepting_it():
    """With ``inconclusive="pass"`` already given, the hint says the sampled check was
    accepted and still names how to check every element."""
    layer, x = _bn((16, 8), True)
    report = check_layer(layer, x, strategy="sampled", samples=20, inconclusive="pass")
    text = " ".join(str(report).split())
    assert report.passed and "accepted as passing here (inconclusive='pass')" in text
    assert "inconclusive='pass' accepts" not in text
    assert "samples= at least the target's size" in text


def test_a_sampled_and_another_inconclusive_get_both_hints():
    """``x`` sampled, a parameter with no effect on the output (a zero numerical
    gradient): the sampled remedy for ``x``, another input or dout for the rest."""
    class Unused:
        def __init__(self):
            self.W, self.dW = np.ones(3), None

        def forward(self, x):
            self.x = x
            return np.tanh(x) + 0 * self.W.sum()

        def backward(self, dout):
            self.dW = np.zeros(3)
            return dout * (1 - np.tanh(self.x) ** 2)

    x = np.random.default_rng(0).normal(size=(10, 10))
    text = str(check_layer(Unused(), x, strategy="sampled", samples=20))
    hints = " ".join(text.split()).split("hint: ")[1:]  # each hint, unwrapped (any width)
    assert len(hints) == 2 and "elements of x was checked" in hints[0], hints
    assert "change the input or dout" in hints[1]


def test_complex_step_refuses_a_forward_that_is_not_complex_analytic():
    class AbsLayer:
        def forward(self, x):
            self.x = x
            return np.abs(x)

        def backward(self, dout):
            return dout * np.sign(self.x)
    x = np.random.default_rng(0).normal(size=(3, 4)) + 3.0
    assert check_layer(AbsLayer(), x).passed
    with pytest.raises(GradCheckInputError, match="complex.*method='central'"):
        check_layer(AbsLayer(), x, method="complex")


class Relu:
    def forward(self, x, train_flg=True):
        self.mask = x <= 0
        return np.where(self.mask, 0.0, x)

    def backward(self, dout):
        return np.where(self.mask, 0.0, dout)


class LeakyWrong(Relu):
    def backward(self, dout):
        return np.where(self.mask, 0.1, 1.0) * dout  # slope 0.1 where forward has 0


@pytest.mark.parametrize("strategy", ["elementwise", "projection", "sampled"])
def test_relu_at_and_near_kinks_is_excluded_not_failed(strategy):
    x = np.random.default_rng(0).normal(size=(6, 5))
    x[0, 0], x[1, 1], x[2, 2] = 0.0, 1e-9, -3e-7
    report = check_layer(Relu(), x, strategy=strategy, samples=30)  # 30 of 30: every one
    assert report.passed, str(report)
    if strategy != "sampled":
        assert any("non-differentiable" in w for w in report.warnings)


def test_wrong_relu_away_from_kinks_fails():
    x = np.random.default_rng(0).normal(size=(6, 5))
    x[np.abs(x) < 0.1] = 0.5
    assert not check_layer(LeakyWrong(), x).passed
    assert not check_layer(LeakyWrong(), x, strategy="projection").passed


def test_max_pool_with_ties_passes():
    class MaxPool1x2:
        def forward(self, x):
            pairs = x.reshape(x.shape[0], -1, 2)
            self.arg = np.argmax(pairs, axis=2)
            return np.take_along_axis(pairs, self.arg[..., None], 2)[..., 0]

        def backward(self, dout):
            dx = np.zeros(dout.shape + (2,))
            np.put_along_axis(dx, self.arg[..., None], dout[..., None], 2)
            return dx.reshape(dout.shape[0], -1)
    x = np.random.default_rng(1).normal(size=(3, 6))
    x[0, 1] = x[0, 0]  # a tie
    report = check_layer(MaxPool1x2(), x)
    assert report.passed, str(report)
    assert (0, 0) in report.result("x").excluded or (0, 1) in report.result("x").excluded


def test_nondet_tol_accepts_tiny_backward_noise():
    class NoisyBackward(BatchNormalization):
        def _backward(self, dout):
            return super()._backward(dout) + 1e-14 * np.random.default_rng().normal()
    layer, x = _bn((6, 4), True, NoisyBackward)
    assert not check_layer(layer, x).passed
    assert check_layer(layer, x, nondet_tol=1e-12).passed


def test_parallel_evaluation_is_bit_identical_to_serial(monkeypatch):
    from gradcheck.engine import parallel

    monkeypatch.setattr(parallel, "BREAK_EVEN", 0.0)  # workers even for this small target
    layer, x = _bn((16, 32), True)
    one = dict(wrt=["x"], strategy="elementwise")
    serial = check_layer(layer, x, **one)
    with ThreadPoolExecutor(2) as ex:
        threaded = check_layer(layer, x, executor=ex, **one)
    procs = check_layer(layer, x, n_jobs=2, **one)
    for r in (threaded, procs):
        assert r.passed
        assert np.array_equal(r.result("x").numerical, serial.result("x").numerical)
        assert not [f for f in r.findings if f.kind == "parallel-serial"]
        # each worker's set-up makes one forward call of its own, and the report counts it
        assert r.forward_calls > serial.forward_calls


def test_an_executor_whose_workers_trim_malloc_gets_a_note(monkeypatch):
    from concurrent.futures import ProcessPoolExecutor

    layer, x = _bn((16, 32), True)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # inherited by the workers
    with ProcessPoolExecutor(2) as ex:
        report = check_layer(layer, x, wrt=["x"], strategy="elementwise", executor=ex)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    with ProcessPoolExecutor(2) as ex:
        clean = check_layer(layer, x, wrt=["x"], strategy="elementwise", executor=ex)
    assert report.passed and clean.passed
    kinds = [[f.kind for f in r.findings] for r in (report, clean)]
    assert kinds[0].count("executor-environment") == 1 and "executor-environment" not in kinds[1]
    assert "pre-spawn-environ.MALLOC_TRIM_THRESHOLD_" in str(report.findings)


def test_n_jobs_below_its_break_even_runs_serially_with_a_note():
    layer, x = _bn((16, 32), True)
    one = dict(wrt=["x"], strategy="elementwise")
    serial = check_layer(layer, x, **one)
    procs = check_layer(layer, x, n_jobs=2, **one)
    assert procs.forward_calls == serial.forward_calls
    assert np.array_equal(procs.result("x").numerical, serial.result("x").numerical)
    notes = [f for f in procs.findings if f.kind == "parallel-serial"]
    assert len(notes) == 1 and "evaluated serially" in notes[0].message


def test_parallel_evaluation_on_a_local_dask_cluster():
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed "
                                      "(pip install 'dask[distributed]')")
    layer, x = _bn((16, 32), True)
    serial = check_layer(layer, x, wrt=["x"], strategy="elementwise")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        report = check_layer(layer, x, wrt=["x"], executor=client.get_executor(),
                             strategy="elementwise")
        grouped = check_layer(layer, x, wrt=["x"], executor=client.get_executor(),
                              strategy="grouped")
    assert report.passed and grouped.passed
    assert np.array_equal(report.result("x").numerical, serial.result("x").numerical)
    # the layer scattered once: one set-up (one forward call) per worker at most
    assert 1 <= report.forward_calls - serial.forward_calls <= 2
    serial = check_layer(layer, x, wrt=["x"], strategy="grouped")
    assert np.array_equal(grouped.result("x").numerical, serial.result("x").numerical)
    assert grouped.result("x").strategy == "grouped"


@pytest.mark.parametrize("kwargs, match", [
    ({"samples": 0}, "samples must be"), ({"probes": 1.5}, "probes must be"),
    ({"precision": "half"}, "precision must be"), ({"nondet_tol": -1}, "nondet_tol"),
    ({"n_jobs": 0}, "n_jobs"), ({"executor": object()}, "executor must be"),
    ({"method": "complex", "strategy": "jacobian"}, "supports strategy=.elementwise. only"),
])
def test_invalid_engine_options(kwargs, match):
    layer, x = _bn((4, 3), True)
    with pytest.raises(GradCheckInputError, match=match):
        check_layer(layer, x, **kwargs)


def test_a_step_that_underflows_is_an_input_error():
    layer, x = _bn((4, 3), True)
    with pytest.raises(GradCheckInputError, match="eps=1e-300 underflows.*eps=None"):
        check_layer(layer, x + 10.0, eps=1e-300)


def test_float16_layer_is_checked_in_float64():
    layer, x = _bn((6, 4), True)
    layer.gamma, layer.beta = layer.gamma.astype(np.float16), layer.beta.astype(np.float16)
    report = check_layer(layer, x.astype(np.float16))
    assert report.passed and report.dtype == "float64" and report.input_dtype == "float16"
    assert layer.gamma.dtype == np.float16


def test_zero_tolerances_never_turn_smooth_elements_into_kinks():
    """atol=rtol=0 demands exact agreement: a smooth layer FAILS, never a vacuous PASS."""
    layer, x = _bn((5, 3), True)
    report = check_layer(layer, x, atol=0.0, rtol=0.0)
    assert not report.passed
    assert all(not r.excluded for r in report.results)
    assert report.result("x").n_checked == x.size


def test_smooth_but_curved_layer_is_not_mistaken_for_a_kink():
    class Sharp:
        """exp(50 x): large second derivative, no kink."""
        def forward(self, x):
            self.y = np.exp(50 * x)
            return self.y

        def backward(self, dout):
            return dout * 50 * self.y * 1.001  # wrong by 0.1 %
    x = np.random.default_rng(0).uniform(-0.1, 0.1, size=(4, 3))
    report = check_layer(Sharp(), x)
    assert not report.passed and not report.result("x").excluded


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_call_same_seed_gives_a_bit_identical_report(strategy):
    reports = []
    for _ in range(2):
        layer, x = _bn((5, 4), True)
        reports.append(check_layer(layer, x, strategy=strategy, seed=7))
    a, b = reports
    assert a.to_dict(arrays=True) == b.to_dict(arrays=True)
    for ra, rb in zip(a.results, b.results):
        assert ra.numerical.tobytes() == rb.numerical.tobytes()
    d = a.to_dict()
    assert d["seed"] == 7 and d["method"] == "central" and d["versions"]["numpy"]
    assert all("step" in r and "atol" in r and "rtol" in r for r in d["results"])
