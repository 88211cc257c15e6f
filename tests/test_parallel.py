"""The parallel path: the layer shipped once per worker, every forward call counted, progress."""

import io
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, strategies as st
from rich.console import Console

from gradcheck import check_layer
from gradcheck.engine import parallel
from gradcheck.engine.parallel import CHUNK_SECONDS, CHUNKS_PER_WORKER, chunk_count, on_progress
from gradcheck.gate.run import CheckProgress
from gradcheck.gate.suite import make_batchnorm
from layers.batchnorm import BatchNormalization

ONE = dict(wrt=["x"], strategy="elementwise")


class CountingBN(BatchNormalization):
    """Appends one byte to ``path`` per forward call, in whatever process makes it."""

    def __init__(self, gamma, beta, path):
        super().__init__(gamma, beta)
        self.path = str(path)

    def forward(self, x, train_flg=True):
        with open(self.path, "ab") as f:  # O_APPEND: one whole byte per call, across processes
            f.write(b".")
        return super().forward(x, train_flg)


def _counting(tmp_path, name, shape=(16, 32)):
    base, x = make_batchnorm(shape, np.random.default_rng(0), True)
    path = tmp_path / name
    path.touch()
    return CountingBN(base.gamma, base.beta, path), x, path


def _calls(path):
    return path.stat().st_size


@pytest.fixture
def workers_always(monkeypatch):
    monkeypatch.setattr(parallel, "BREAK_EVEN", 0.0)  # workers even for these small targets
    monkeypatch.setattr(parallel, "CHUNK_SECONDS", 1e-9)  # many chunks per worker


def _executors():
    return {"n_jobs": lambda: None, "threads": lambda: ThreadPoolExecutor(2),
            "processes": lambda: ProcessPoolExecutor(2)}


@pytest.mark.parametrize("kind", ["n_jobs", "threads", "processes"])
def test_every_forward_call_is_counted_and_each_worker_sets_up_once(kind, tmp_path,
                                                                    workers_always):
    layer, x, path = _counting(tmp_path, "serial")
    serial = check_layer(layer, x, **ONE)
    assert _calls(path) == serial.forward_calls + serial.discovery_calls[0]
    layer, x, path = _counting(tmp_path, kind)
    executor = _executors()[kind]()
    options = {"n_jobs": 2} if executor is None else {"executor": executor}
    try:
        report = check_layer(layer, x, **ONE, **options)
    finally:
        if executor is not None:
            executor.shutdown()
    # every call made, in this process or a worker, is in the report
    assert _calls(path) == report.forward_calls + report.discovery_calls[0]
    # over 64 chunks, one set-up (one forward call) per worker, not per chunk
    assert 1 <= report.forward_calls - serial.forward_calls <= 2
    assert np.array_equal(report.result("x").numerical, serial.result("x").numerical)
    assert report.passed and not [f for f in report.findings if f.kind == "parallel-serial"]


def test_progress_hook_sees_every_worker_call(tmp_path, workers_always):
    layer, x, path = _counting(tmp_path, "hook")
    seen = []
    with on_progress(seen.append):
        report = check_layer(layer, x, n_jobs=2, **ONE)
    assert len(seen) == CHUNKS_PER_WORKER * 2 and all(c > 0 for c in seen)
    done = np.cumsum(seen)
    assert (np.diff(done) > 0).all()
    # the workers' calls: two per element, and one set-up per worker
    serial = check_layer(layer, x, **ONE)
    assert done[-1] == 2 * x.size + report.forward_calls - serial.forward_calls
    assert not parallel._HOOKS  # the hook is removed after the block


def test_progress_is_reported_as_each_chunk_completes_not_at_the_end():
    from concurrent.futures import Future

    first, second = Future(), Future()
    reported = threading.Event()

    def finish():
        first.set_result((None, None, None, 5))
        # the second chunk ends only once the first one's calls were reported
        second.set_result((None, None, None, 7 if reported.wait(10) else -1))

    seen = []
    worker = threading.Thread(target=finish)
    with on_progress(lambda calls: (seen.append(calls), reported.set())):
        worker.start()
        parts = parallel._collect([first, second])
    worker.join()
    assert seen == [5, 7] and [p[3] for p in parts] == [5, 7]


def test_check_progress_counts_the_workers_calls_too(workers_always):
    layer, x = make_batchnorm((16, 32), np.random.default_rng(0), True)
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with CheckProgress(console, 1, enabled=True, delay=0.0) as progress:
        with progress.check("bn", layer, x, "central"):  # its wrapper pickles as forward
            report = check_layer(layer, x, n_jobs=2, **ONE)
    assert progress.last_calls == report.forward_calls + report.discovery_calls[0]
    assert "forward" not in vars(layer) and report.passed


@pytest.mark.parametrize("kind", ["n_jobs", "threads"])
def test_grouped_checks_are_distributed_and_bit_identical(kind, tmp_path, workers_always):
    layer, x, path = _counting(tmp_path, "grouped")
    serial = check_layer(layer, x, wrt=["x"], strategy="grouped")
    before = _calls(path)
    executor = _executors()[kind]()
    options = {"n_jobs": 2} if executor is None else {"executor": executor}
    try:
        report = check_layer(layer, x, wrt=["x"], strategy="grouped", **options)
    finally:
        if executor is not None:
            executor.shutdown()
    assert report.result("x").strategy == "grouped" and report.passed
    assert np.array_equal(report.result("x").numerical, serial.result("x").numerical)
    assert _calls(path) - before == report.forward_calls + report.discovery_calls[0]
    assert 1 <= report.forward_calls - serial.forward_calls <= 2
    assert not [f for f in report.findings if f.kind == "parallel-serial"]


def test_grouped_checks_below_the_break_even_say_so_from_the_measured_time():
    layer, x = make_batchnorm((16, 32), np.random.default_rng(0), True)
    serial = check_layer(layer, x, wrt=["x"], strategy="grouped")
    report = check_layer(layer, x, wrt=["x"], strategy="grouped", n_jobs=2)
    assert report.forward_calls == serial.forward_calls
    notes = [f.message for f in report.findings if f.kind == "parallel-serial"]
    assert len(notes) == 1 and "grouped forward calls take about" in notes[0]
    assert "µs each, measured" in notes[0]


@pytest.mark.parametrize("options", [{"strategy": "projection"}, {"strategy": "jacobian"},
                                     {"method": "complex"}])
def test_a_strategy_that_runs_serially_says_so(options):
    layer, x = make_batchnorm((4, 3), np.random.default_rng(0), True)
    report = check_layer(layer, x, n_jobs=2, **options)
    notes = [f.message for f in report.findings if f.kind == "parallel-serial"]
    assert len(notes) == 1 and "ran serially" in notes[0]
    assert not [f for f in check_layer(layer, x, **options).findings
                if f.kind == "parallel-serial"]


class FailsInWorkers(BatchNormalization):
    """Raises in any process but the one that made it."""

    def __init__(self, gamma, beta):
        super().__init__(gamma, beta)
        self.home = os.getpid()

    def forward(self, x, train_flg=True):
        if os.getpid() != self.home:
            raise ValueError("not at home")
        return super().forward(x, train_flg)


def test_a_worker_error_reaches_the_caller(workers_always):
    from gradcheck.errors import LayerCallError

    base, x = make_batchnorm((16, 32), np.random.default_rng(0), True)
    with pytest.raises(LayerCallError, match="ValueError: not at home"):
        check_layer(FailsInWorkers(base.gamma, base.beta), x, n_jobs=2, **ONE)


class DiesInWorkers(BatchNormalization):
    """Ends any process but the one that made it, as a crash or an OOM kill would."""

    def __init__(self, gamma, beta, how):
        super().__init__(gamma, beta)
        self.home, self.how = os.getpid(), how

    def forward(self, x, train_flg=True):
        if os.getpid() != self.home:
            if self.how == "exit":
                os._exit(3)
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x, train_flg)


@pytest.mark.parametrize("how, status", [("exit", "exit code 3"), ("kill", "killed by SIGKILL")])
def test_a_worker_that_dies_is_a_layer_call_error(workers_always, how, status):
    from gradcheck.errors import LayerCallError

    base, x = make_batchnorm((16, 32), np.random.default_rng(0), True)
    with pytest.raises(LayerCallError) as info:
        check_layer(DiesInWorkers(base.gamma, base.beta, how), x, n_jobs=2, **ONE)
    message = str(info.value)
    assert message.startswith("layer DiesInWorkers, target 'x': a worker process died")
    assert status in message and "n_jobs=None" in message
    assert type(info.value.__cause__).__name__ == "BrokenProcessPool"


def test_an_unpicklable_layer_is_an_input_error(workers_always):
    class Local(BatchNormalization):
        pass

    base, x = make_batchnorm((16, 32), np.random.default_rng(0), True)
    with pytest.raises(Exception, match="picklable layer"):
        check_layer(Local(base.gamma, base.beta), x, n_jobs=2, **ONE)


@given(n=st.integers(1, 10**6), seconds=st.floats(1e-7, 10.0), workers=st.integers(1, 64))
def test_chunks_are_long_enough_and_enough_of_them(n, seconds, workers):
    k = chunk_count(n, seconds, workers)
    assert 1 <= k <= n
    assert k <= max(workers, workers * CHUNKS_PER_WORKER)
    assert k >= min(n, workers)  # every worker gets work when there is enough of it
    if k > workers:  # more chunks than workers only when each is long enough
        assert (n / k) * seconds >= CHUNK_SECONDS * 0.999


def test_targets_below_parallel_min_say_they_ran_serially():
    layer, x = make_batchnorm((4, 3), np.random.default_rng(0), True)
    report = check_layer(layer, x, strategy="elementwise", n_jobs=2)
    notes = {f.target: f.message for f in report.findings if f.kind == "parallel-serial"}
    assert set(notes) == {"x", "gamma", "beta"}
    assert "its 12 elements are too few to share out among workers" in notes["x"]
    assert not [f for f in check_layer(layer, x, strategy="elementwise").findings
                if f.kind == "parallel-serial"]


def test_a_spawned_worker_draws_from_the_callers_module_generator(workers_always):
    """A worker process that imported the layer's module anew (spawn, a cluster) holds that
    module's generator at its seed, not where the caller's is: the check sends it the
    caller's state, and the worker's differences are the serial ones."""
    import multiprocessing
    import conventions_layers
    from conventions_layers import ModuleRngDropoutDense

    x = np.random.default_rng(2).normal(size=(48, 6))  # enough elements to share out
    conventions_layers.DROPOUT_RNG.random(3)  # the caller's generator moved past its seed
    serial = check_layer(ModuleRngDropoutDense(), x, **ONE)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
        report = check_layer(ModuleRngDropoutDense(), x, **ONE, executor=executor)
    assert serial.passed and report.passed, report
    assert not [f for f in report.findings if f.kind == "parallel-serial"]
    assert np.array_equal(report.result("x").numerical, serial.result("x").numerical)


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_workers_check_forward_not_a_call_that_returns_something_else(kind, workers_always):
    """A worker's copy of a layer whose ``__call__`` returns ``2 * forward(x)`` is evaluated
    through forward, as the caller's is: the 2x backward FAILs."""
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from conventions_layers import CallDoubled

    x = np.random.default_rng(0).normal(size=(128, 3))  # above PARALLEL_MIN
    with _executors()[kind]() as pool:
        report = check_layer(CallDoubled(), x, executor=pool, **ONE)
    assert report.result("x").verdict == "FAIL", str(report)
    assert "ran serially" not in str(report)
