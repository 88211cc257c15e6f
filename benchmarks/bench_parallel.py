"""Speed-up of ``n_jobs=2`` and of a 2-worker ``dask.distributed`` cluster, serial beside them.

    pip install -e '.[parallel]' && python benchmarks/bench_parallel.py

On BatchNormalization (64, 1024) and (64, 256), train mode, ``wrt=["x"]``,
``strategy="elementwise"`` (every element black-box: the work the parallel
path splits), one BLAS thread per process. Per shape, in one run and in this
order and :data:`ROUNDS` times (the median is shown): the serial check,
``n_jobs=2``, and ``executor=`` a 2-worker ``LocalCluster`` (``processes=True``,
one thread per worker, created once under ``dask.config.set({"distributed.
nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})``; its start-up, and
the import of gradcheck in its workers, are timed apart and not in the rows).
Columns: wall time of ``check_layer``, speed-up over serial, whether the
numerical gradient is bit-identical to the serial one, the reported forward
calls (serial + one set-up call per worker), and *others' CPU*: the largest
share of the machine's CPU that processes other than the benchmark's used
during a run of the row (another job on 2 cores halves a speed-up).

The *ceiling* line: bare forward calls of (64, 1024) in one process alone
against two processes at once -- the best speed-up two workers can reach on
this machine (the two cores share caches and memory bandwidth).

A second table measures the break-even of ``n_jobs=2``
(:data:`gradcheck.engine.parallel.BREAK_EVEN`, set to 0 here so the workers
are used): smaller BatchNormalization inputs, the serial time the check
estimated from its measured call time, serial and ``n_jobs=2`` (medians of
three, interleaved).
"""

import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread: the cores are shared (set before numpy)

import numpy as np  # noqa: E402

from gradcheck import check_layer  # noqa: E402
from gradcheck.gate.suite import make_batchnorm  # noqa: E402

#: Rounds per shape (interleaved: serial, n_jobs=2, dask in each), to keep the run near 2 min.
ROUNDS = {(64, 1024): 1, (64, 256): 3}
ONE = dict(wrt=["x"], strategy="elementwise")
#: Inputs around the break-even of ``n_jobs=2``.
SMALL = [(16, 32), (32, 64), (64, 64), (64, 128)]


def _cluster():
    """``(client, seconds to start)`` of a 2-worker local cluster, or ``(None, reason)``."""
    try:
        import dask
        import distributed
    except ImportError:
        return None, "dask.distributed not installed (pip install 'dask[distributed]')"
    t0 = time.perf_counter()
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    client.wait_for_workers(2)
    client.run(exec, "import gradcheck.engine.parallel")  # what a worker's first task imports
    return client, time.perf_counter() - t0


def _cpu_seconds():
    """``(machine, mine)``: CPU seconds the machine's processes and this process with its
    children have used so far (Linux ``/proc/stat`` and ``psutil``, which dask brings), or
    None."""
    try:
        import psutil

        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:8]]
    except (ImportError, OSError, ValueError):
        return None
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # not idle, iowait
    t = os.times()  # children that ended and were waited for (the n_jobs pool)
    mine = t.user + t.system + t.children_user + t.children_system
    for child in psutil.Process().children(recursive=True):  # live ones (dask's workers)
        try:
            c = child.cpu_times()
            mine += c.user + c.system
        except psutil.Error:
            pass
    return busy, mine


def _timed(layer, x, **options):
    """``(report, seconds, others)``: ``others`` is the share of the machine's CPU that
    other processes used during the run (NaN when it cannot be measured)."""
    before, t0 = _cpu_seconds(), time.perf_counter()
    report = check_layer(layer, x, **ONE, **options)
    seconds, after = time.perf_counter() - t0, _cpu_seconds()
    others = float("nan") if before is None else max(0.0, (after[0] - before[0]) - (
        after[1] - before[1])) / (seconds * os.cpu_count())
    return report, seconds, others


def _rows(shape, runs, times, reports, others):
    base, serial = float(np.median(times["serial"])), reports["serial"].result("x").numerical
    for label, options in runs.items():
        report, seconds = reports[label], float(np.median(times[label]))
        same = np.array_equal(report.result("x").numerical, serial)
        serial_note = any(f.kind == "parallel-serial" for f in report.findings)
        ran = "-" if not options else ("no (below break-even)" if serial_note else "yes")
        print(f"| {shape} | {label} | {seconds:.2f} | {base / seconds:.2f} | {same} | "
              f"{report.forward_calls} | {ran} | {100 * max(others[label]):.0f} % |", flush=True)


#: Bare forward calls per process in the ceiling measurement.
CEILING_CALLS = 3000


def _bare_calls(shape, calls=CEILING_CALLS):
    """Seconds of ``calls`` bare forward calls of BatchNormalization ``shape`` (in a worker)."""
    layer, x = make_batchnorm(shape, np.random.default_rng(0), True)
    layer.forward(x, True)
    t0 = time.perf_counter()
    for _ in range(calls):
        layer.forward(x, True)
    return time.perf_counter() - t0


def ceiling(shape=(64, 1024), rounds=3):
    """The best speed-up two workers can reach here: bare forward calls in one process alone
    against two processes at once (each the same calls), ``2 t1 / t2``."""
    from concurrent.futures import ProcessPoolExecutor

    one, two = [], []
    before, t0 = _cpu_seconds(), time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_bare_calls, [(4, 4)] * 2))  # both processes started
        for _ in range(rounds):
            one.append(pool.submit(_bare_calls, shape).result())
            two.append(max(pool.map(_bare_calls, [shape] * 2)))
    seconds, after = time.perf_counter() - t0, _cpu_seconds()
    others = float("nan") if before is None else max(0.0, (after[0] - before[0]) - (
        after[1] - before[1])) / (seconds * os.cpu_count())
    t1, t2 = float(np.median(one)), float(np.median(two))
    print(f"\nceiling: {CEILING_CALLS} bare forward calls of {shape}, one process alone "
          f"{t1 * 1e6 / CEILING_CALLS:.0f} µs/call, two at once {t2 * 1e6 / CEILING_CALLS:.0f} "
          f"µs/call: 2 workers can reach {2 * t1 / t2:.2f}x (medians of {rounds}; others' "
          f"CPU {100 * others:.0f} %)")


def break_even(rounds=3):
    """The break-even table: estimated serial seconds, serial, ``n_jobs=2``, speed-up."""
    from gradcheck.engine import parallel

    estimates, worth_it, saved = [], parallel.worth_it, parallel.BREAK_EVEN

    def recording(problem, setup, n_items, what="forward calls", minimum=0):
        estimates.append(setup.method.calls * n_items * setup.call_time)
        return worth_it(problem, setup, n_items, what, minimum)

    parallel.worth_it, parallel.BREAK_EVEN = recording, 0.0
    print("\n| shape | estimated serial s | serial s | n_jobs=2 s | speed-up | others' CPU |")
    print("|---|---|---|---|---|---|")
    try:
        for shape in SMALL:
            layer, x = make_batchnorm(shape, np.random.default_rng(0), True)
            serial, par, others = [], [], []
            for _ in range(rounds):
                for runs, options in ((serial, {}), (par, {"n_jobs": 2})):
                    _, seconds, other = _timed(layer, x, **options)
                    runs.append(seconds)
                    others.append(other)
            s, p = float(np.median(serial)), float(np.median(par))
            print(f"| {shape} | {np.median(estimates):.2f} | {s:.3f} | {p:.3f} | {s / p:.2f} | "
                  f"{100 * max(others):.0f} % |", flush=True)
            estimates.clear()
    finally:
        parallel.worth_it, parallel.BREAK_EVEN = worth_it, saved


def main():
    load = os.getloadavg()
    print(f"cores: {os.cpu_count()}, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    client, started = _cluster()
    if client is None:
        print(f"dask rows skipped: {started}")
    else:
        print(f"LocalCluster(2 workers) start-up: {started:.2f} s (not in the rows)")
    print("\n| shape | run | s | speed-up | bit-identical | forward calls | parallel | others' CPU |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for shape, rounds in ROUNDS.items():
            layer, x = make_batchnorm(shape, np.random.default_rng(0), True)
            runs = {"serial": {}, "n_jobs=2": {"n_jobs": 2}}
            if client is not None:
                runs["dask 2 workers"] = {"executor": client.get_executor()}
            times, others = {label: [] for label in runs}, {label: [] for label in runs}
            reports = {}
            for _ in range(rounds):
                for label, options in runs.items():
                    reports[label], seconds, other = _timed(layer, x, **options)
                    times[label].append(seconds)
                    others[label].append(other)
            _rows(shape, runs, times, reports, others)
    finally:
        if client is not None:
            cluster = client.cluster
            client.close()
            cluster.close()
    ceiling()
    break_even()
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")


if __name__ == "__main__":
    main()
