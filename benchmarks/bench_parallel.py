"""Speed-up of ``n_jobs=2`` and of a 2-worker ``dask.distributed`` cluster, serial beside them.

    pip install -e '.[parallel]' && python benchmarks/bench_parallel.py

On BatchNormalization (64, 1024) and (64, 256), train mode, ``wrt=["x"]``,
``strategy="elementwise"`` (every element black-box: the work the parallel
path splits), one BLAS thread per process. Per shape, in one run and in this
order: the serial check, ``n_jobs=2``, and ``executor=`` a 2-worker
``LocalCluster`` (``processes=True``, one thread per worker, created once
under ``dask.config.set({"distributed.nanny.pre-spawn-environ.
MALLOC_TRIM_THRESHOLD_": None})``; its start-up time is printed apart and not
in the rows). Columns: wall time of ``check_layer``, speed-up over serial,
whether the numerical gradient is bit-identical to the serial one, and the
reported forward calls (serial + what the workers' setups added).
"""

import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread: the cores are shared (set before numpy)

import numpy as np  # noqa: E402

from gradcheck import check_layer  # noqa: E402
from gradcheck.gate.suite import make_batchnorm  # noqa: E402

SHAPES = [(64, 1024), (64, 256)]
ONE = dict(wrt=["x"], strategy="elementwise")


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
    return client, time.perf_counter() - t0


def _timed(layer, x, **options):
    t0 = time.perf_counter()
    report = check_layer(layer, x, **ONE, **options)
    return report, time.perf_counter() - t0


def main():
    load = os.getloadavg()
    print(f"cores: {os.cpu_count()}, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    client, started = _cluster()
    if client is None:
        print(f"dask rows skipped: {started}")
    else:
        print(f"LocalCluster(2 workers) start-up: {started:.2f} s (not in the rows)")
    print("\n| shape | run | s | speed-up | bit-identical | forward calls | parallel |")
    print("|---|---|---|---|---|---|---|")
    try:
        for shape in SHAPES:
            layer, x = make_batchnorm(shape, np.random.default_rng(0), True)
            runs = [("serial", {}), ("n_jobs=2", {"n_jobs": 2})]
            if client is not None:
                runs.append(("dask 2 workers", {"executor": client.get_executor()}))
            base = None
            for label, options in runs:
                report, seconds = _timed(layer, x, **options)
                base = base or (report, seconds)
                same = np.array_equal(report.result("x").numerical, base[0].result("x").numerical)
                serial_note = any(f.kind == "parallel-serial" for f in report.findings)
                ran = "-" if not options else ("no (below break-even)" if serial_note else "yes")
                print(f"| {shape} | {label} | {seconds:.2f} | {base[1] / seconds:.2f} | {same} | "
                      f"{report.forward_calls} | {ran} |", flush=True)
    finally:
        if client is not None:
            cluster = client.cluster
            client.close()
            cluster.close()
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")


if __name__ == "__main__":
    main()
