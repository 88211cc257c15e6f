"""Parallel evaluation of a target's differences over chunks of elements or of groups.

The layer, the input and ``dout`` (as the layer was before the check), the
steps and the stencil are pickled once per target (:func:`_payload`) and go
to each worker once:

* ``n_jobs``: a local ``ProcessPoolExecutor`` whose initializer unpickles
  them in every worker process; a chunk task carries only its indices;
* ``executor=`` a ``dask.distributed`` client's ``get_executor()`` (told by
  its type, without importing dask): the payload is scattered to every
  worker once (``broadcast=True``) and each task names it;
* any other ``concurrent.futures.Executor``: each task carries the payload
  bytes, and a worker unpickles them only the first time it sees their
  digest.

A worker keeps one set-up copy per worker thread (:class:`_Worker`, in a
thread-local cache: threads of one process must not share a layer they
perturb in place) until it is given another payload: a later check with the
same bytes (layer, state, input, steps) reuses it. Its set-up -- the per-call state restore and one forward
call for the unperturbed output -- is made on its first chunk, and that
chunk reports it: every chunk returns the forward calls its worker actually
made, and the report's ``forward_calls`` adds exactly those (a worker that
set up and got no chunk would otherwise go uncounted). Each worker runs the
one perturbation loop (:func:`gradcheck.engine.perturb.differences`) on its
chunk; the chunks' results are put together in order, so the result is
bit-identical to a serial run. As chunks complete, the forward calls they
made go to the progress hooks (:func:`on_progress`): calls made in other
processes are invisible to a wrapper of the caller's ``layer.forward``.

How the work is split is :func:`chunk_count`'s rule, from the measured time
of one forward call. Below its break-even ``n_jobs`` does not pay
(:func:`worth_it`, :data:`BREAK_EVEN`), and the target is evaluated serially
with a note; an ``executor=`` is the caller's own and always used.

Its workers' environment is looked at once per check (:func:`worker_malloc_note`):
``dask.distributed``'s nanny starts worker processes with
``MALLOC_TRIM_THRESHOLD_=65536``, which made one bare forward call of
BatchNormalization (64, 1024) 8.6x slower (1,408 µs against 164 µs in a
fresh process) and a 2-worker ``LocalCluster`` 3.8x slower than serial. The
check never changes a cluster it is given; the note says how to create one
without it.
"""

import hashlib
import pickle
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, ProcessPoolExecutor, wait
from contextlib import contextmanager

import numpy as np

from gradcheck.engine.perturb import ElementMoves, GroupMoves, GroupReduce, Reduce, differences
from gradcheck.protocol.discovery import plain_forward, plain_held, release_forward
from gradcheck.protocol.state import dumps_shared, unheld_states

__all__ = ["parallel_differences", "parallel_groups", "worth_it", "chunk_count",
           "on_progress", "worker_malloc_note", "BREAK_EVEN", "CHUNK_SECONDS",
           "CHUNKS_PER_WORKER"]

#: Seconds of serial forward calls (as estimated from the measured call time) below which
#: ``n_jobs`` worker processes do not pay: on the 2-core development machine,
#: BatchNormalization at an estimate of 0.09 s ran at 1.0x serial, at 0.44 s 1.5x, at 2 s
#: 2.1x (the layer shipped once per worker to a forked pool; benchmarks/README.md).
BREAK_EVEN = 0.5

#: A chunk holds at least this many seconds of forward calls: a task's own cost (a few
#: ms on a local dask cluster) stays under 1% of it.
CHUNK_SECONDS = 0.5

#: At most this many chunks per worker: the slowest worker's last chunk leaves the
#: others idle for at most about 1/32 of the run.
CHUNKS_PER_WORKER = 32


def chunk_count(n_items, item_seconds, workers):
    """How many chunks ``n_items`` of ``item_seconds`` each are split into over ``workers``.

    The rule, in one place: chunks of at least :data:`CHUNK_SECONDS` of
    forward calls, at most :data:`CHUNKS_PER_WORKER` per worker, at least one
    per worker, at most one per item.

    Parameters
    ----------
    n_items : int
        Elements (or groups) to differentiate.
    item_seconds : float
        Measured seconds of forward calls per item (calls per item times the
        seconds of one call).
    workers : int

    Returns
    -------
    int
    """
    by_time = int(n_items * item_seconds // CHUNK_SECONDS)
    return int(max(1, min(n_items, max(workers, min(by_time, workers * CHUNKS_PER_WORKER)))))


def worth_it(problem, setup, n_items, what="forward calls", minimum=0):
    """Whether ``n_jobs`` pays for ``n_items`` items' differences; a note when it does not.

    Parameters
    ----------
    problem : gradcheck.protocol.problem.Problem
    setup : gradcheck.engine.elementwise.Setup
        Brings ``call_time``, the measured seconds per forward call.
    n_items : int
        Elements (or groups), ``setup.method.calls`` forward calls each.
    what : str
        What the calls are, for the note (``"grouped forward calls"``).
    minimum : int
        Fewer items than this are evaluated serially (``Options.parallel_min``),
        also with an ``executor=``.

    Returns
    -------
    bool
        True with an ``executor=``, or when the serial calls would take at least
        :data:`BREAK_EVEN` seconds; False below ``minimum`` items.
    """
    from gradcheck.report import Finding

    opts = setup.opts
    name = setup.target.name
    if n_items < minimum:
        problem.findings.append(Finding(
            "parallel-serial", False,
            f"{_parallel_option(opts)}: {name!r} was evaluated serially: its {n_items} "
            f"elements are too few to share out among workers (fewer than {minimum})", name))
        return False
    if opts.executor is not None:
        return True
    calls = setup.method.calls * n_items
    serial = calls * setup.call_time
    if serial >= BREAK_EVEN:
        return True
    problem.findings.append(Finding(
        "parallel-serial", False,
        f"n_jobs={opts.n_jobs}: {name!r} was evaluated serially: its {calls} "
        f"{what} take about {serial:.2g} s ({setup.call_time * 1e6:.0f} µs each, "
        f"measured), below the ~{BREAK_EVEN:g} s of work where worker processes pay for "
        "their start-up and the shipped layer", name))
    return False


def _parallel_option(opts):
    return f"n_jobs={opts.n_jobs}" if opts.executor is None else "executor="


# -- progress -----------------------------------------------------------------
_HOOKS = []


@contextmanager
def on_progress(callback):
    """Call ``callback(calls)`` while the block runs, each time a parallel chunk completes.

    ``calls`` is the number of forward calls the chunk's worker made (its
    set-up included); they are made in other processes (or on copies of the
    layer), where a wrapper of ``layer.forward`` does not see them.

    Parameters
    ----------
    callback : callable
        Called in the checking thread, once per completed chunk.
    """
    _HOOKS.append(callback)
    try:
        yield callback
    finally:
        _HOOKS.remove(callback)


def _progress(calls):
    for hook in list(_HOOKS):
        hook(calls)


# -- the executor's environment ------------------------------------------------
#: Above this many bytes, glibc's trim threshold no longer slows allocation-heavy calls.
MALLOC_TRIM_OK = 1 << 20


def _malloc_trim_threshold():
    """The worker's ``MALLOC_TRIM_THRESHOLD_`` (runs in the worker)."""
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def worker_malloc_note(problem, executor):
    """A note when ``executor``'s workers run with a small ``MALLOC_TRIM_THRESHOLD_`` (once).

    Parameters
    ----------
    problem : gradcheck.protocol.problem.Problem
        The note goes to its findings; asked once per check.
    executor : concurrent.futures.Executor
        The caller's executor (one tiny task reads a worker's environment).
    """
    if problem.__dict__.get("_malloc_checked"):
        return
    problem._malloc_checked = True
    try:
        value = executor.submit(_malloc_trim_threshold).result(timeout=60)
    except Exception:  # an executor that cannot run the probe: nothing to say
        return
    try:
        small = value is not None and int(value) < MALLOC_TRIM_OK
    except ValueError:
        return
    if small:
        from gradcheck.report import Finding

        problem.findings.append(Finding(
            "executor-environment", False,
            f"the executor's workers run with MALLOC_TRIM_THRESHOLD_={value} in their "
            "environment (dask.distributed's nanny sets 65536): glibc then hands freed memory "
            "back to the OS on every call, which made a forward call 8.6x slower in a "
            "measurement; the check leaves your cluster as it is -- create it under "
            "dask.config.set({'distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_': "
            "None}) (or unset the variable) for full speed"))


# -- the worker side ------------------------------------------------------------
class _Worker:
    """A worker's own copy of the layer and what its chunks need, set up once.

    Unpickled from the payload when made; the per-call state restore and the
    unperturbed output (one forward call) are made on the first chunk, which
    reports that call (:meth:`run`).
    """

    def __init__(self, key, payload):
        self.key = key
        (self.layer, self.xw, self.fresh_x, self.train_flg, self.dout, self.target,
         self.steps, self.pairs, self.weights, self.structure, self.tol,
         self.rng_states, self.plain) = pickle.loads(payload)
        self.adapter = None
        for obj in self.plain:  # the copies of the layers checked through forward, not __call__
            plain_forward(obj)

    def release(self):
        """Undo what :meth:`__init__` registered (another target's copy replaces this one)."""
        for obj in self.plain:
            release_forward(obj)

    def _set_up(self):
        from gradcheck.protocol.adapter import LayerAdapter, get_attr
        from gradcheck.protocol.problem import make_evaluator
        from gradcheck.protocol.state import StateSnapshot, put_unheld

        adapter = LayerAdapter(self.layer, self.train_flg)
        put_unheld(StateSnapshot(self.layer), self.rng_states)  # a module imported anew
        snapshot = StateSnapshot(self.layer)
        self.out0 = np.array(adapter.forward(self.xw.copy()), copy=True).reshape(-1)
        dirty = snapshot.changed()
        snapshot.restore_all()
        self.arr = self.xw if self.target == "x" else get_attr(self.layer, self.target)
        self.evaluate = make_evaluator(adapter, self.xw, self.fresh_x, dirty, self.target,
                                       self.arr, self.out0.size)
        self.adapter = adapter

    def run(self, items):
        """``(R, span, support, calls)`` of a chunk: elements, or groups of them.

        ``calls`` counts every forward call made for the chunk, the set-up's
        included when this chunk made it.
        """
        before = 0 if self.adapter is None else self.adapter.forward_calls
        if self.adapter is None:
            self._set_up()
        n_pairs = len(self.pairs)
        if self.structure is None:
            sink = Reduce(self.dout, len(items), n_pairs, noise_w=self.weights)
            span = differences(self.evaluate, ElementMoves(self.arr, items, self.steps),
                               self.pairs, sink, self.out0)
            R, support = sink.R.real, sink.noise
        else:
            moves = GroupMoves(self.arr, items, self.steps, self.pairs)
            sink = GroupReduce(self.dout, items, self.structure, n_pairs,
                               noise_w=self.weights, tol=self.tol)
            differences(self.evaluate, moves, self.pairs, sink, self.out0)
            done = np.concatenate(items)
            R, span, support = sink.R[done], moves.spans[done], sink.noise[done]
        return R, span, support, self.adapter.forward_calls - before


_LOCAL = threading.local()


def _worker(key, payload):
    """This thread's :class:`_Worker` for ``key``, unpickled from ``payload`` if new."""
    w = getattr(_LOCAL, "worker", None)
    if w is None or w.key != key:
        if payload is None:
            raise RuntimeError("parallel worker: no set-up for this check (its initializer "
                               "did not run)")
        if w is not None:
            w.release()
        w = _LOCAL.worker = _Worker(key, payload)  # the previous target's copy is dropped
    return w


def _init_worker(key, payload):
    """A ``ProcessPoolExecutor`` initializer: the layer unpickled once per process."""
    _worker(key, payload)


def _chunk(key, payload, items):
    """One chunk's task (``payload`` None: the initializer unpickled it)."""
    return _worker(key, payload).run(items)


# -- the caller's side ----------------------------------------------------------
def _payload(problem, setup, grouped):
    problem.snapshot.restore_all()
    structure = setup.structure if grouped else None
    try:
        return dumps_shared((problem.layer, problem.xw, problem.fresh_x,
                             problem.adapter.train_flg, problem.dout, setup.target.name,
                             setup.steps, setup.method.pairs, setup.noise.weights, structure,
                             setup.opts.nondet_tol, unheld_states(problem.snapshot),
                             plain_held(obj for obj, _ in problem.snapshot.objects)))
    except Exception as exc:
        from gradcheck.errors import GradCheckInputError
        raise GradCheckInputError(
            f"n_jobs/executor need a picklable layer: {type(exc).__name__}: {exc}",
            layer=problem.name, target=setup.target.name) from exc


def _dask_client(executor):
    """The ``distributed.Client`` behind a ``client.get_executor()``, else None (no import)."""
    client = getattr(executor, "_client", None)
    if type(executor).__module__.split(".")[0] == "distributed" and \
            callable(getattr(client, "scatter", None)):
        return client
    return None


def _submit_all(executor, chunks, key, payload):
    """Submit every chunk: the payload scattered once on dask, else sent with each task."""
    client = _dask_client(executor)
    if client is not None:
        shared = client.scatter(payload, broadcast=True, hash=False)
        return [executor.submit(_chunk, key, shared, c, pure=False) for c in chunks], shared
    return [executor.submit(_chunk, key, payload, c) for c in chunks], None


def _collect(futures):
    """The chunks' results in order, reporting progress as each completes; the first error
    cancels the rest and is raised."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for f in done:
            if f.exception() is not None:
                for p in pending:
                    p.cancel()
                raise f.exception()
            _progress(f.result()[3])
    return [f.result() for f in futures]


def _run_chunks(problem, setup, chunks, grouped):
    """Every chunk's ``(R, span, support, calls)``, in order; the calls counted."""
    opts = setup.opts
    payload = _payload(problem, setup, grouped)
    key = hashlib.blake2b(payload, digest_size=16).hexdigest()
    own = opts.executor is None
    executor = ProcessPoolExecutor(min(opts.n_jobs or 2, len(chunks)), initializer=_init_worker,
                                   initargs=(key, payload)) if own else opts.executor
    shared = None
    try:  # a worker may die while the chunks are still being submitted
        if own:
            submit = [executor.submit(_chunk, key, None, c) for c in chunks]
        else:
            worker_malloc_note(problem, executor)
            submit, shared = _submit_all(executor, chunks, key, payload)
        parts = _collect(submit)
    except BrokenExecutor as exc:
        raise _worker_died(problem, setup, executor if own else None) from exc
    finally:
        if own:
            executor.shutdown(cancel_futures=True)
        del shared
    problem.adapter.forward_calls += sum(p[3] for p in parts)
    return parts


def _exit_statuses(pool):
    """How the dead workers of ``pool`` (a ``ProcessPoolExecutor``) ended, as far as known:
    ``["exit code 3"]``, ``["killed by SIGKILL"]`` (the OOM killer's signal), or ``[]``.

    The pool terminates its other workers (SIGTERM) once one has died; those
    are left out.
    """
    statuses = []
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.exitcode is None:
            process.join(0.5)  # one the pool is terminating, or the dead one not yet reaped
        code = process.exitcode
        if code is None or code == -signal.SIGTERM:
            continue
        if code < 0:
            try:
                statuses.append(f"killed by {signal.Signals(-code).name}")
            except ValueError:
                statuses.append(f"killed by signal {-code}")
        else:
            statuses.append(f"exit code {code}")
    return statuses


def _worker_died(problem, setup, pool):
    """The ``LayerCallError`` of a worker process that died (``os._exit``, a crash, an OOM
    kill) while evaluating ``setup``'s target; ``pool``: our own pool, else ``None``."""
    from gradcheck.errors import LayerCallError

    statuses = _exit_statuses(pool) if pool is not None else []
    how = f" ({', '.join(dict.fromkeys(statuses))})" if statuses else ""
    serial = "n_jobs=None" if pool is not None else "without executor="
    return LayerCallError(
        f"a worker process died{how} while evaluating the differences in parallel: the "
        "layer's forward ended its process (os._exit, a crash in compiled code) or it ran out "
        f"of memory (the OOM killer); rerun with {serial} to check serially, in this process, "
        "and see what happens", layer=problem.name, target=setup.target.name)


def _workers(opts):
    return opts.n_jobs or 2


def parallel_differences(problem, setup, idx):
    """``(R, span, support)`` of the elements ``idx``, split over the executor or ``n_jobs``.

    Parameters
    ----------
    problem : gradcheck.protocol.problem.Problem
    setup : gradcheck.engine.elementwise.Setup
    idx : ndarray of int
        Flat indices of the elements.

    Returns
    -------
    tuple of ndarray
        As the serial loop's: reduced differences ``(len(idx), pairs)``, their
        denominators, and the support noise of each element.
    """
    idx = np.asarray(idx)
    k = chunk_count(len(idx), setup.method.calls * setup.call_time, _workers(setup.opts))
    chunks = [c for c in np.array_split(idx, k) if len(c)]
    parts = _run_chunks(problem, setup, chunks, grouped=False)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def parallel_groups(problem, setup, groups):
    """``(done, R, span, support)`` of ``groups`` (each perturbed at once), split over workers.

    Parameters
    ----------
    problem : gradcheck.protocol.problem.Problem
    setup : gradcheck.engine.elementwise.Setup
        With the target's :attr:`structure` (the groups' supports).
    groups : list of ndarray of int

    Returns
    -------
    tuple of ndarray
        ``done``, the members of every group in order, and their reduced
        differences, denominators and support noise (rows of ``done``).

    Raises
    ------
    gradcheck.engine.perturb.StructureViolated
        A worker saw an output outside a group's predicted supports move.
    """
    k = chunk_count(len(groups), setup.method.calls * setup.call_time, _workers(setup.opts))
    chunks = [[groups[i] for i in c] for c in np.array_split(np.arange(len(groups)), k) if len(c)]
    parts = _run_chunks(problem, setup, chunks, grouped=True)
    done = np.concatenate([g for c in chunks for g in c])
    return (done,) + tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
