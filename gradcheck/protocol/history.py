"""The sequence check: bugs that live in state, caught and named.

The gradient check restores the layer before every evaluation, so every call
it makes is "the first call". A backward that caches its ``dx``, accumulates
into a persistent buffer or counts its calls passes it. :func:`check_history`
therefore also runs the layer the way a training loop does, from the check's
working state and restoring nothing in between:

1. ``forward(x1)``, ``backward(d1)`` at parameters moved by ``1 +- 0.01``
   (random signs; zeros by ``+0.01``), ``x1`` being ``x`` with its first (batch)
   axis reversed and one row repeated, other batch statistics (:func:`first_input`),
   and ``d1`` a random upstream gradient, with the generators a forward draws
   from one draw ahead of the check's state (another dropout mask); in train
   mode when the check is in eval mode and ``forward`` takes ``train_flg`` or the
   layer holds its mode as an attribute (``self.training``, set for the call
   and put back by the step): a training step before evaluation, and after one
   eval-mode forward at ``x1`` (validate, train, validate: a cache an eval
   forward computes once and never refreshes, a count of eval calls, is stale
   or moved at call 3);
2. an optimizer step that puts every parameter, and every generator, back to
   the check's value (the second call draws the check's mask);
3. ``forward(x)`` in the check's mode and ``backward(dout)``: the check's own
   point, so the gradient check's finite differences already hold for it;
4. ``backward(2 * dout)`` right after, on the same forward: twice call 3's
   gradient means backward is repeatable and linear in ``dout``; otherwise
   (the findings below told apart) ``backward(dout)`` once more on the same
   forward and ``backward(2 * dout)`` from the state right after call 3's
   forward, apart (:meth:`_Sequence._backward_again`).

Calls 1 and 3-4 are traced (:mod:`gradcheck.protocol.tracing`). The findings,
each of its own kind and never a gradient mismatch:

=====================  ======================================================
``nonfinite-state``    call 1 leaves NaN/inf in an array the next forward reads
``stale-state``        call 3's backward reads attributes left over from call 1
                       (:mod:`gradcheck.protocol.stale`), named
``backward-history``   call 3's gradient is not the one the pure check verified
                       at the same point and fails finite differences on the
                       post-step state; classified: the first call's gradient
                       returned again, accumulated into a buffer, scaled by
                       the number of calls (a gradient read from backward's own
                       step: its message says a decaying rate, ``lr / (1 + decay
                       * t)``, is one cause)
``backward-twice``     backward(dout) again differs from call 3 (only a note when
                       call 3's gradient is verified and backward computed it in
                       place in forward's cache, which it reads: ``dx = self.ys;
                       dx[...] -= 1``, right once per forward; or when forward
                       refreshes a gradient backward adds into)
``backward-nonlinear`` backward(2 dout) differs from twice call 3 (only a note for a
                       scalar output whose backward ignores dout, a terminal loss:
                       ``problem.ignores_dout``; ``g * dout**2`` FAILs)
=====================  ======================================================

At most one of the last three per target, and none for a target whose pure
check failed (its gradient is wrong anyway). A target INCONCLUSIVE only because
its gradient vanished at the check's point (``ZERO_GRADIENT``: ``dWh`` through
a kept state of zeros) is verified at call 3 too, where the state moved: a
failure there is a ``backward-history`` finding, a pass a note (verified at a
second state). Everything is restored afterwards.
How call 3 is verified (:meth:`_Sequence._history`): when its output equals
the check's ``out0`` and its gradient the check's analytic gradient (both to
``nondet_tol``, bitwise by default), the gradient check's own finite
differences at this point verify it, and no call is made. Otherwise the
gradient is checked by finite differences on the post-step state: when the
output moved with the state (a dropout mask, running statistics, a kept
hidden state), first by one random projection per target at the main check's
noise and steps (2 forward calls), and a target that does not pass it, or one
whose output was unchanged but its gradient not, by a few elements with the
noise measured there: half those where the gradient moved most from the
verified one, half at random (:func:`_verify_second_call`).

Not seen: a backward using a copy of a parameter made before the check (``self.WT =
W.T.copy()`` in ``__init__``): the step puts the parameters back, so call 3 is at the
check's parameters, where the copy is right (verifying it at moved parameters would cost
a projection per target on every layer).

Cost: 2 forward and 3 backward calls and 2 state snapshots (2 more backward
calls when a finding of call 4 is told apart); in eval mode after a training
step, one more forward call (the validation before it) and 2 more forward calls per target
when the output moved with the state (running statistics, a kept hidden state;
not a dropout mask, drawn again from the check's state)
(``benchmarks/bench_sequence.py``).
"""

import contextlib
from dataclasses import replace

import numpy as np

from gradcheck.engine.verdict import sampled_only, vanished
from gradcheck.errors import GradCheckInputError, LayerCallError, intermittent_error
from gradcheck.protocol.adapter import flag_value, get_attr, get_grad
from gradcheck.protocol.discovery import flush_accumulated, move_params, owner_key
from gradcheck.protocol.problem import _close
from gradcheck.protocol.stale import Leftovers, stale_message
from gradcheck.protocol.state import StateSnapshot
from gradcheck.protocol.tracing import AccessTracer
from gradcheck.report import Finding

#: Relative learning rate of the optimizer step between the two calls.
LEARNING_RATE = 1e-2
#: ``backward(LINEARITY * dout)`` must be ``LINEARITY * backward(dout)`` (a power of 2: exact).
LINEARITY = 2.0
#: Failing findings after which a second call cannot be compared with a first.
NONDETERMINISTIC = ("forward-nondeterministic", "backward-nondeterministic")
#: The kinds of finding the sequence check makes.
FINDING_KINDS = ("nonfinite-state", "stale-state", "backward-history", "backward-twice",
                 "backward-nonlinear", "sequence-skipped", "sequence-note")


def check_history(run, results, opts):
    """Run the sequence check after the gradient check; append its findings to ``run.findings``.

    Parameters
    ----------
    run : Problem
        The check (its layer, working input, ``dout``, parameters, targets,
        working-state snapshot and findings).
    results : tuple of TargetResult
        The gradient check's verdicts: a target that failed gets no history finding.
    opts : gradcheck.check.Options

    Raises
    ------
    GradCheckInputError
        The layer's own error on a call of the sequence (the message says so
        and that ``sequence=False`` skips the check).
    """
    run.opts = opts
    if any(f.failure and f.kind in NONDETERMINISTIC for f in run.findings):
        run.findings.append(Finding(
            "sequence-skipped", False, "sequence check skipped: the layer is not "
            "deterministic, so a second call cannot be compared with a first"))
        return
    if any(f.kind == "backward-steps" for f in run.findings):
        run.findings.append(Finding(
            "sequence-skipped", False, "sequence check skipped: backward steps parameters "
            "forward reads (backward-steps finding), so a second call runs on other "
            "parameters and cannot be compared with a first"))
        return
    if run.adapter.no_flush:
        run.findings.append(Finding(
            "sequence-skipped", False, "sequence check skipped: the layer's training step "
            "ends with flush_gradients(), after which its backward raises, so a second "
            "call after a step cannot be made"))
        return
    seq = None
    try:
        seq = _Sequence(run, results)
        run.findings.extend(seq.findings())
    except GradCheckInputError as exc:
        if not (isinstance(exc, LayerCallError) and getattr(seq, "flushed", 0)):
            raise _in_sequence(exc) from (exc.__cause__ or exc)
        run.findings.append(Finding(
            "sequence-skipped", False, "sequence check skipped: after the training step's "
            "flush_gradients() (what numpy-ml's update() calls) the layer's next call raised ("
            + str(exc).split(": ", 1)[-1] + "), so a second call after a step cannot be made"))
    finally:
        run.snapshot.restore_all()


def _in_sequence(exc):
    """The layer's error on a call of the sequence, saying where it came from."""
    text = str(exc).split(": ", 1)[-1] if exc.layer else str(exc)
    return type(exc)(f"{text} (in the sequence check: forward/backward calls as a training "
                     "loop makes them, without restoring the state in between -- the first "
                     "at another input, one row repeated, and parameters moved by a factor "
                     "1 +- 0.01; sequence=False skips it)",
                     layer=exc.layer, target=exc.target)


class _Sequence:
    """The calls of one sequence check and what they found."""

    def __init__(self, run, results):
        self.run, self.layer = run, run.layer
        # a mode held as an attribute (self.training) is set for call 1, back in the step
        self.holders, self.mode_values = run.adapter.mode_holders, None
        self.modes = run.adapter.flag_mode is not None or bool(self.holders)
        self.train_step = True if self.modes else run.adapter.train_flg
        self.judged = [r.name for r in results if r.passed]
        # INCONCLUSIVE only because the gradient vanished at the check's point (a kept
        # state of zeros): the second call, at a moved state, is verified for them too
        self.vanished = vanished(results)
        self.tracer = AccessTracer(run.snapshot.objects)
        self.objects = {id(o): o for o, _ in run.snapshot.objects}
        self.rng = np.random.default_rng([run.seed, 11])
        self.written = {}
        self.verified = set()  # targets whose call-3 gradient is verified (the check's own)
        self.b2_changed = []  # the slots call 3's backward changed
        self.doubled = False  # backward(2 dout) returned twice backward(dout) (nondet_tol)
        # (id(owner), name) of every parameter and gradient path (sub-layers, containers)
        self._owned = {k for pair in run.params.items() for n in pair
                       for k in owner_key(self.layer, n)}

    # -- calls ---------------------------------------------------------------
    def forward(self, x, train, phase=None):
        adapter = self.run.adapter
        if train != adapter.train_flg and self.holders:
            # the check's values, put back by _step_back
            self.mode_values = [getattr(obj, attr) for obj, attr in self.holders]
            for obj, attr in self.holders:
                setattr(obj, attr, flag_value(attr, train))
        if train != adapter.train_flg and adapter.flag_mode is not None:
            adapter = adapter.in_mode(train)
        with self.tracer.trace(phase) if phase else contextlib.nullcontext():
            out = np.array(adapter.forward(x.copy()), copy=True)
        if adapter is not self.run.adapter:
            self.run.adapter.forward_calls += adapter.forward_calls
        return out

    def backward(self, dout, phase=None):
        """``{target: gradient as float64, or None}`` after one ``backward(dout)``."""
        run = self.run
        with self.tracer.trace(phase) if phase else contextlib.nullcontext():
            dx, _ = run.adapter.backward(dout, run.xw.shape, run.xw.dtype)
        grads = {"x": np.array(dx, dtype=np.float64)}
        for p, g in run.params.items():
            value = get_grad(self.layer, g, p)
            grads[p] = np.array(value, dtype=np.float64) if isinstance(
                value, (np.ndarray, float, np.floating)) \
                else None
        return grads

    def mode(self, train):
        return ("train-mode " if train else "eval-mode ") if self.modes else ""

    # -- the sequence --------------------------------------------------------
    def findings(self):
        run = self.run
        notes = self._first_call()
        self._step_back()
        self.mid = StateSnapshot(self.layer)
        self.out2 = self.forward(run.xw, run.adapter.train_flg, "f2")
        self.dirty = self.mid.changed()
        self.written["f2"] = self.mid.written(self.dirty)
        # the state the layer keeps: read by the second forward before it writes it, written
        # by the first (the check's zero-state note names it also when it began as None)
        run.kept_state = {self.tracer.name(k) for k in self.tracer.first_reads("f2")
                          if k in self.tracer.writes("f1")}
        broken = self._nonfinite()
        if broken:
            return notes + broken
        # the second call is the check's own point: its input, parameters and dout
        self.d2 = run.dout.reshape(run.out_shape).copy()
        self.after = StateSnapshot(self.layer)
        g_twice, g_scaled = self._backward_again(notes)
        self.after.restore_all()  # the leftovers are judged on the state backward starts from
        leftovers = Leftovers(self.tracer, self.written, self.objects, self._protected,
                              self._changes_backward, self._changes_forward)
        if leftovers.forward:
            stale = Finding("stale-state", True, stale_message(
                leftovers.forward, self.mode(run.adapter.train_flg), self.mode(self.train_step)))
            return notes + [stale] + self._twice(g_twice, set()) + self._linearity(g_scaled, set())
        # one finding per target: a recognised history bug, else a backward not linear in
        # dout (which also fails finite differences with another dout), else the rest
        history = self._history(leftovers.backward)
        found = notes + [f for f, recognised in history if recognised]
        found += self._linearity(g_scaled, {f.target for f in found}, leftovers.backward)
        flagged = {f.target for f in found if f.failure}
        found += [f for f, recognised in history if not recognised and f.target not in flagged]
        found += self._twice(g_twice, {f.target for f in found if f.failure})
        return found + self._second_dout({f.target for f in found})

    def _backward_again(self, notes):
        """Calls 3-5: ``(gradients of backward(dout) again, of backward(2 dout))``.

        First ``backward(dout)`` then, without restoring, ``backward(2 * dout)``:
        when that returns exactly twice the first (to ``nondet_tol``), backward
        is both repeatable and linear in ``dout`` (a history effect or a
        nonlinearity would have to cancel the other exactly), and the twice
        check takes the first call's gradient as its second (2 backward calls in
        all). Otherwise the calls are made apart, each from the state after
        forward: ``backward(dout)`` twice, then ``backward(2 * dout)`` (4 calls),
        so each finding is told apart from the other.
        """
        self.g2 = self.backward(self.d2, "b2")
        self.b2_changed = self.after.changed()
        tol = LINEARITY * self.run.opts.nondet_tol
        try:  # not traced: what it reads is looked at only once the calls are made apart
            scaled = self.backward(LINEARITY * self.d2)
            if all(self.g2.get(t) is None or scaled.get(t) is None or _close(
                    scaled[t], LINEARITY * self.g2[t], tol) for t in self.judged):
                self.doubled = True
                return dict(self.g2), scaled
            self.sequential = scaled  # backward(2 dout) right after backward(dout)
        except LayerCallError:
            pass  # made apart below, where its note is written
        self.after.restore_all()
        self.g2 = self.backward(self.d2, "b2")
        self.b2_changed = self.after.changed()
        try:
            g_twice = self.backward(self.d2, "b3")
        except LayerCallError as exc:  # a backward that frees its cache, as PyTorch's graph
            g_twice = {}
            notes.append(Finding("sequence-note", False, (
                f"backward called twice after one forward raised ({str(exc).split(': ', 1)[-1]})"
                "; a backward that frees its cache cannot run twice, so this was not checked")))
        self.after.restore_all()
        return g_twice, self.backward(LINEARITY * self.d2)

    def _first_call(self):
        """Call 1 (the training step) at another input and parameters; in the check's mode if
        the train-mode call raises."""
        run = self.run
        x1 = first_input(run.xw, self.rng)
        for attempt in range(2):
            drawn = self.rng.bit_generator.state
            try:
                self._call_one(x1)
                return [] if attempt == 0 else [Finding("sequence-note", False, (
                    f"sequence check: a train-mode forward/backward raised ({failed}); the "
                    "first call was made in eval mode instead"))]
            except LayerCallError as exc:
                if self.train_step == run.adapter.train_flg:
                    raise
                self._intermittent(exc, x1, drawn)
                failed, self.train_step = str(exc).split(": ", 1)[-1], run.adapter.train_flg

    def _call_one(self, x1):
        """The first call's forward/backward at ``x1`` and moved parameters, from the
        snapshot."""
        run, s0 = self.run, self.run.snapshot
        s0.restore_all()
        s0.advance(run.dirty)  # another dropout mask than the check's and the second call's
        self.p0 = move_params(self.layer, run.params, self.rng, LEARNING_RATE)
        if self.train_step != run.adapter.train_flg:  # validate, train, validate
            self.forward(x1, run.adapter.train_flg)
        out1 = self.forward(x1, self.train_step, "f1")
        self.written["f1"] = s0.written()
        dout = run.dout.reshape(run.out_shape)
        # a scalar output (a loss) keeps the check's dout: a terminal loss layer's
        # backward may assume its own dout
        d1 = dout if out1.size == 1 and out1.shape == dout.shape else self._random(out1)
        self.g1 = self.backward(d1, "b1")
        self.written["b1"] = s0.written()

    def _intermittent(self, exc, x1, drawn):
        """A train-mode first call that raised, made once more as it was (the same draws):
        when it then returns, its error is intermittent and raised (not a train mode that
        cannot run, which the eval-mode call replaces)."""
        def again():
            self.rng.bit_generator.state = drawn
            self._call_one(x1)

        method = "backward" if str(exc).split(": ", 1)[-1].startswith("backward()") \
            else "forward"
        err = intermittent_error(exc.__cause__ or exc, again,
                                 "in the sequence check's train-mode first call",
                                 layer=exc.layer, method=method)
        if err is not None:
            raise err from exc.__cause__

    def _step_back(self):
        """The optimizer step between the calls: numpy-ml's ``flush_gradients()`` (the end
        of its ``update()``), then every parameter back to the check's value (in the
        arrays the layer holds then) and the random generators to the check's state: the
        second call draws the check's dropout mask, so a layer whose function moves only
        with its draws is at the check's own point."""
        self.flushed = flush_accumulated(self.layer)  # never reached with adapter.no_flush
        for (obj, attr), value in zip(self.holders, self.mode_values or ()):
            setattr(obj, attr, value)  # the mode attributes back to the check's mode
        for p, saved in self.p0.items():
            arr = get_attr(self.layer, p)
            if isinstance(arr, np.ndarray) and arr.shape == saved.shape and arr.flags.writeable:
                arr[...] = saved
        StateSnapshot.restore([s for s in self.run.snapshot.generators() if s.changed()])

    def _random(self, out):
        return self.rng.standard_normal(out.shape).astype(out.dtype, copy=False)

    def _protected(self, key):
        """Parameters (and aliases of them) and gradient attributes are never stale state."""
        names = {n.split("[")[0] for pair in self.run.params.items() for n in pair}
        if key[0] == id(self.layer) and key[1] in names:
            return True
        if key in self._owned:
            return True
        value = getattr(self.objects.get(key[0]), key[1], None)
        return any(value is get_attr(self.layer, p) for p in self.run.params)

    def _changes_backward(self, obj, name, poison):
        return self._poisoned_call(obj, name, poison, lambda: self.backward(self.d2), self.g2)

    def _changes_forward(self, obj, name, poison):
        return self._poisoned_call(obj, name, poison,
                                   lambda: {"out": self.forward(self.run.xw, self.run.adapter
                                                                .train_flg)},
                                   {"out": self.out2})

    def _poisoned_call(self, obj, name, poison, call, reference):
        self.after.restore_all()
        try:
            object.__setattr__(obj, name, poison)
            with np.errstate(all="ignore"):
                got = call()
        except GradCheckInputError:
            return True  # the call raised on the poisoned value: it reads it
        except (AttributeError, TypeError):
            return False  # cannot be set
        finally:
            self.after.restore_all()
        return any(not _same(got[t], reference[t]) for t in reference)

    # -- findings ------------------------------------------------------------
    def _nonfinite(self):
        """``nonfinite-state``: call 1 left NaN/inf in an array the next forward reads."""
        before = {s.path: s.saved for s in self.run.snapshot.slots if s.kind == "array"}
        reads = self.tracer.reads("f2")
        names = []
        for s in self.mid.slots:
            if s.kind != "array" or s.saved.dtype.kind not in "fc" or s.owner is None \
                    or np.isfinite(s.saved).all():
                continue
            prev = before.get(s.path)
            key = (id(s.owner[0]), s.owner[1])
            if (prev is None or np.isfinite(prev).all()) and (
                    key in reads or not self.tracer.is_traced(key[0])):
                names.append(f"`{s.path}`")
        if names:
            return [Finding("nonfinite-state", True, (
                f"a {self.mode(self.train_step)}forward on this input leaves NaN or inf in "
                f"{', '.join(names)}, finite before the call, and the next forward reads "
                f"{'them' if len(names) > 1 else 'it'}; the sequence check stopped there"))]
        if not np.isfinite(self.out2).all():
            return [Finding("nonfinite-state", True, (
                f"after one {self.mode(self.train_step)}forward/backward and a parameter "
                "update, forward returns NaN or inf at the check's own input; the sequence "
                "check stopped there"))]
        return []

    def _grad_name(self, t):
        return "dx" if t == "x" else self.run.params[t]

    def _history(self, own):
        """``backward-history``: the second call's gradient is not the one the check verified.

        The second call is made at the check's own input, parameters and ``dout``.
        When its output is the check's ``out0`` and its gradient the check's
        analytic gradient (to ``nondet_tol``), the gradient check's finite
        differences verify it: no call is made. A target whose gradient differs, or
        every target when the output differs (the layer's function moved with its
        state: a dropout mask, running statistics, a kept hidden state), is checked
        by finite differences on the post-step state (:func:`_verify_second_call`).

        Returns ``[(Finding, recognised)]``: ``recognised`` when the gradient is the
        first call's again, accumulated or scaled by the number of calls.
        """
        run = self.run
        grads = {t: g for t, g in self.g2.items() if g is not None}
        tol = run.opts.nondet_tol
        same_output = _close(self.out2.reshape(-1), np.asarray(run.out0).reshape(-1), tol)
        open_ = [t for t in self.judged + self.vanished if t in grads and not (
            same_output and _close(grads[t], run.analytic[t], tol))]
        self.verified = {t for t in self.judged if t in grads and t not in open_}
        if not open_:
            return []
        call = dict(x=run.xw, out=self.out2, dout=self.d2, grads=grads, state=self.mid,
                    dirty=self.dirty)
        # a vanished target was never verified: elements, not one projection's screen
        screen = () if same_output else [t for t in open_ if t not in self.vanished]
        results = _verify_second_call(run, call, open_, screen=screen)
        self.verified |= call["passed"] & set(self.judged)
        why = (f" (it reads {', '.join(f'`{n}`' for n in own)}, which an earlier backward "
               "wrote)" if own else "")
        found = [(_vanished_note(t, self._grad_name(t)), True) for t in self.vanished
                 if t in call["passed"] and np.any(grads[t])]
        for t, (r, located) in results.items():
            if t in self.vanished:
                found.append((Finding("backward-history", True, (
                    f"{self._grad_name(t)} is wrong at a second state: zero at the check's "
                    "point (INCONCLUSIVE there), it fails the finite-difference check after "
                    f"a first forward/backward moved the state{why}"), t), True))
                continue
            if r.verdict == "FAIL":
                what, recognised = _classify(self.g1.get(t), grads[t], located)
                found.append((Finding("backward-history", True, "backward depends on history: "
                                      + what.format(g=self._grad_name(t)) + why
                                      + _step_read_hint(self._grad_name(t), why), t),
                              recognised))
        # a gradient read from backward's own step that is scaled on the second call stays
        # a failure (a counter in the gradient looks the same as a decaying rate from
        # outside); its message says a rate schedule is one cause (_step_read_hint)
        return found

    def _twice(self, again, flagged):
        """``backward-twice``: a second backward on the same forward gave another result."""
        found = []
        for t in self.judged:
            a, b = self.g2.get(t), again.get(t)
            if t in flagged or a is None or b is None or _close(a, b, self.run.opts.nondet_tol):
                continue
            doubled = " (twice the first: it accumulates or counts its calls)" \
                if a.shape == b.shape and np.allclose(b, 2 * a, rtol=1e-6, atol=0) else ""
            if doubled and t in getattr(self.run, "forward_refreshed", ()):
                found.append(Finding("backward-twice", False, (
                    f"forward refreshes {self._grad_name(t)} (rebinds or zeroes it) and "
                    "backward adds into it (+=): "
                    "right once per forward, as a training loop calls it; a second backward "
                    "without a forward adds the gradient again"), t))
                continue
            cache = self._forward_cache_written() if t in self.verified else []
            if cache:
                found.append(Finding("backward-twice", False, (
                    f"backward writes into forward's cache {', '.join(f'`{n}`' for n in cache)}"
                    ", which it reads: right once per forward, as a training loop calls it; a "
                    f"second backward without a forward returns another {self._grad_name(t)}"),
                    t))
                continue
            found.append(Finding("backward-twice", True, (
                f"backward called twice after one forward returned another {self._grad_name(t)} "
                f"the second time (max difference {_max_diff(a, b):.3g}){doubled}"
                f"{self._twice_why()}"), t))
        return found

    def _second_dout(self, flagged):
        """``backward-twice``: ``backward(2 dout)`` right after ``backward(dout)`` on the same
        forward is not twice the first, though each alone is (a ``dx`` computed once per
        forward and returned to every later backward, whatever its dout: a layer whose
        output feeds two consumers gets its second gradient wrong), beyond the linearity
        check's tolerance (:func:`nonlinear_finding`: a gradient read from an SGD step is
        linear to its rounding only)."""
        found, seq = [], getattr(self, "sequential", None)
        for t in self.judged if seq is not None else ():
            a, b = self.g2.get(t), seq.get(t)
            if t in flagged or a is None or b is None or nonlinear_finding(
                    self.run, t, a, b, LINEARITY, self.out2.dtype) is None:  # its tolerance
                continue
            cache = self._forward_cache_written() if t in self.verified else []
            name = self._grad_name(t)
            found.append(Finding("backward-twice", not cache, (
                f"a second backward on the same forward, with twice its dout, returned a "
                f"{name} that is not twice the first (max difference "
                f"{_max_diff(LINEARITY * a, b):.3g}), though each alone is"
                + (f"; backward writes into forward's cache "
                   f"{', '.join(f'`{n}`' for n in cache)}: right once per forward" if cache
                   else self._twice_why())), t))
        return found

    def _twice_why(self):
        """What the second backward's first reads say of a ``backward-twice`` failure: the
        attributes the first one changed that it reads (traced as ``"b3"`` when the calls
        were made apart: :meth:`_backward_again`)."""
        tracer = self.tracer
        changed = [tracer.name(k) for k in tracer.first_reads("b3")
                   if k in tracer.writes("b2") and not self._protected(k)] \
            if tracer.traced("b3") else []
        return f": it changes {', '.join(f'`{n}`' for n in changed)}, which it reads" \
            if changed else ": it changes state that it reads"

    def _forward_cache_written(self):
        """The paths of the arrays call 3's backward changed in place that its forward
        wrote and it reads (its cache: the second book's ``dx = self.ys; dx[...] -= 1``,
        with or without ``dx = dx / N`` after it; a cache zeroed after use), when that is
        the only state it changed that the next backward reads; else ``[]`` (a counter, a
        persistent buffer forward does not write: a failure)."""
        tracer, cache, keys = self.tracer, [], set()
        if not tracer.traced("b3"):  # the calls were not made apart: nothing to tell
            return []
        for s in self.b2_changed:
            key = (id(s.owner[0]), s.owner[1]) if s.owner is not None else None
            if s.kind == "array" and key in tracer.writes("f2") and key in tracer.reads("b2") \
                    and not self._protected(key):
                cache.append(s.path)
                keys.add(key)
        others = {k for k in self.after.written(self.b2_changed) if k in tracer.reads("b3")
                  and k not in keys and not self._protected(k)}
        others |= {k for k in tracer.first_reads("b3") if k in tracer.writes("b2")
                   and k not in keys and not self._protected(k)}
        return [] if others or any(s.owner is None for s in self.b2_changed
                                   if s.kind not in ("attrs", "slots")) else cache

    def _linearity(self, scaled, flagged, own=()):
        """``backward-nonlinear``: ``backward(2 dout) != 2 backward(dout)``; a note only for
        a scalar output whose backward ignores dout (measured by the check,
        ``problem.ignores_dout``: a terminal loss), a failure for one that uses it
        otherwise than linearly (``g * dout**2``, ``g / dout``: right at ``dout = 1`` only).
        A ``backward-history`` failure instead when backward reads attributes an earlier
        backward wrote (``own``: a momentum buffer ``v = 0.9 v + g``, a ``dh`` carried
        from the last call), the term of the gradient that does not scale with dout."""
        lenient = self.out2.size == 1 and _ignores_dout(self.run)
        flagged = set(flagged) | {f.target for f in self.run.findings
                                  if f.kind == "backward-nonlinear"}  # the check's own
        found = []
        for t in self.judged:
            a, b = self.g2.get(t), scaled.get(t)
            if t in flagged or a is None or b is None:
                continue
            if self.doubled and np.isfinite(a).all():  # within 2 nondet_tol of 2 a: linear
                continue
            finding = nonlinear_finding(self.run, t, a, b, LINEARITY, self.out2.dtype, lenient)
            if finding is not None and own and finding.failure:
                listed = ", ".join(f"`{n}`" for n in own)
                finding = replace(finding, kind="backward-history", message=(
                    "backward depends on history: " + finding.message.split(": ", 1)[1]
                    + f", a term that does not scale with dout: it reads {listed}, which an "
                    "earlier backward wrote (a momentum or accumulation buffer, a gradient "
                    "carried over from the last call)"))
            if finding is not None:
                found.append(finding)
        return found


def _vanished_note(target, grad):
    """The note of a target whose gradient vanished at the check's point and whose second
    call, at a moved state, passes the finite-difference check."""
    return Finding("sequence-note", False, (
        f"{grad} vanished at the check's point (INCONCLUSIVE there); at a second state, "
        f"after a first forward/backward, the second call's {grad} is not zero and passes "
        "the finite-difference check on a sample of its elements: verified at a second "
        "state"), target)


def nonlinear_finding(run, t, a, b, scale, dtype, lenient=False):
    """The ``backward-nonlinear`` finding of target ``t`` when ``b``, its gradient from
    ``backward(scale * dout)``, is not ``scale`` times ``a``, from ``backward(dout)``, to
    ``sqrt(eps)`` of its size (and ``nondet_tol``); else ``None``.

    Parameters
    ----------
    run : Problem
    t : str
    a, b : ndarray
    scale : float
    dtype : numpy dtype
        The output's (its ``eps``).
    lenient : bool
        A scalar output whose backward ignores dout (a terminal loss): a note, not a
        failure.

    Returns
    -------
    Finding or None
    """
    eps = float(np.finfo(dtype).eps)
    tol = np.sqrt(eps) * scale * float(np.max(np.abs(a), initial=0.0)) \
        + scale * run.nondet_tol
    if a.shape == b.shape and np.all(np.abs(b - scale * a) <= tol):
        return None
    note = ("; fine for a terminal loss layer whose backward is only called with "
            "dout = 1" if lenient else "")
    name = "dx" if t == "x" else run.params[t]
    return Finding("backward-nonlinear", not lenient, (
        f"backward is not linear in dout: backward({scale:g} * dout) returned a {name} that "
        f"differs from {scale:g} * backward(dout) by up to {_max_diff(scale * a, b):.3g}"
        f"{note}"), t)


def _ignores_dout(run):
    """Whether the check's ``backward`` returned bitwise the same gradients for another
    dout (``problem.ignores_dout``, measured with the analytic rounding, once a check)."""
    run.analytic_noise()
    return bool(run.ignores_dout)


#: Elements of each target whose second-call derivative is checked by finite differences.
SECOND_CALL_SAMPLE = 8


def _verify_second_call(run, call, targets, screen=()):
    """Finite differences of the second call at the post-step state, on a few elements.

    A target in ``screen`` that passes one random projection at the main
    check's noise and steps (:func:`gradcheck.engine.projection.directional`,
    2 forward calls) is taken as verified; the others go on. The
    ``sampled`` elementwise
    comparison (:func:`gradcheck.engine.elementwise.compare`, a few random
    elements per target, each refined and judged at kinks on its own) with
    each target's measured noise and steps from the main check, on a copy of
    the :class:`~gradcheck.protocol.problem.Problem` that holds the second
    call (post-step state, ``x2``, its output, its gradients and the state one
    forward changes). A history bug moves every element's gradient, so a few
    catch it; elements, unlike a projection, do not mix kinks.

    Parameters
    ----------
    run : Problem
        The gradient check (options in ``run.opts``, parameters, targets).
    call : dict
        ``x``, ``out``, ``dout``, ``grads`` (float64, every target), ``state``
        (the post-step :class:`StateSnapshot`) and ``dirty`` (its slots one
        forward changes). ``call["passed"]`` is set to the targets that pass there.
    targets : list of str
    screen : collection of str
        The targets a projection may verify (the check verified their first call).

    Returns
    -------
    dict
        ``{target: (TargetResult, located)}`` for the targets that FAIL there;
        ``located`` lists ``(index, numerical, analytic)`` of the failing elements.
    """
    from gradcheck.engine.elementwise import compare, prepare, rebind
    from gradcheck.engine.strategies import policy_for
    from gradcheck.engine.verdict import decide
    from gradcheck.protocol.problem import Target

    # serial; the complex step has no real perturbations: central differences
    method = "central" if run.opts.method == "complex" else run.opts.method
    opts = replace(run.opts, n_jobs=None, executor=None, method=method)
    step = object.__new__(type(run))
    step.__dict__.update(run.__dict__)
    x2 = np.array(call["x"], copy=True)
    step.__dict__.update(
        xw=x2, x_ref=x2.copy(), out0=np.asarray(call["out"]).reshape(-1),
        dout=np.asarray(call["dout"], dtype=run.out0.dtype).reshape(-1),
        out_shape=np.shape(call["out"]), analytic=call["grads"], snapshot=call["state"],
        dirty=call["dirty"], findings=[], setups={})
    # the arrays the layer holds now (a step may rebind a parameter to a new array)
    step.targets = tuple(Target(t.name, t.kind, x2 if t.kind == "input" else _held(run, t))
                         for t in run.targets if t.name in targets)
    call["state"].restore_all()
    rng = np.random.default_rng([run.seed, 12])
    failed, call["passed"] = {}, set()
    for target in step.targets:
        base = prepare(run, run.target(target.name), opts)
        if target.name in screen and _screened(step, target, opts,
                                               rebind(base, step, target, measure=False)):
            call["passed"].add(target.name)
            continue
        idx = _second_call_sample(rng, call["grads"][target.name],
                                  run.analytic[target.name])
        setup = rebind(base, step, target)
        result = decide(compare(step, target, opts, idx, "sampled", setup=setup),
                        policy_for(opts, target), step.findings)
        if result.verdict == "FAIL":
            failed[target.name] = (result, _failing_elements(result))
        elif result.verdict == "PASS" or sampled_only(result):  # every sampled element
            call["passed"].add(target.name)
    return failed


def _second_call_sample(rng, second, verified):
    """The flat indices the second call is verified at: the (up to) half of
    :data:`SECOND_CALL_SAMPLE` elements where its gradient ``second`` differs most from
    the ``verified`` one of the check (a history bug in one element of a large target,
    ``dW[i, j] *= calls``, is among them), the rest drawn at random."""
    n = second.size
    k = min(SECOND_CALL_SAMPLE, n)
    change = np.abs(second.reshape(-1) - verified.reshape(-1)) if verified.size == n \
        else np.zeros(n)
    top = [int(i) for i in np.argsort(-change, kind="stable")[:k // 2] if change[i] > 0]
    rest = np.setdiff1d(np.arange(n), top)
    drawn = rng.choice(rest, size=k - len(top), replace=False) if len(rest) else []
    return np.sort(np.concatenate([np.asarray(top, dtype=int), np.asarray(drawn, dtype=int)]))


def _screened(step, target, opts, setup):
    """Whether one random projection at the main check's noise and steps passes (2 calls)."""
    from gradcheck.engine.projection import directional
    from gradcheck.engine.strategies import policy_for
    from gradcheck.engine.verdict import verdict_of

    comp = directional(step, target, opts, step.dout, step.analytic, setup)
    return verdict_of(comp, policy_for(opts, target)) == "PASS"


def _held(run, target):
    """The parameter array ``target`` names, as the layer holds it now."""
    arr = get_attr(run.layer, target.name)
    return arr if isinstance(arr, np.ndarray) and arr.shape == target.array.shape \
        else target.array


def _failing_elements(result):
    """``[(index, numerical, analytic)]`` of the checked elements outside their tolerance."""
    num, ana, tol = (np.asarray(a).reshape(-1) for a in (result.numerical, result.analytic,
                                                          result.tolerances))
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~np.isnan(num) & (np.abs(num - ana) > tol))
    shape = result.shape
    return [(tuple(int(j) for j in np.unravel_index(int(i), shape)), float(num[i]),
             float(ana[i])) for i in bad]


def _step_read_hint(grad_name, why):
    """For a gradient read from backward's own SGD step (``step_grads[...]``) whose
    second call reads state an earlier one wrote: the rate may be what moved."""
    if "step_grads[" not in grad_name or not why:
        return ""
    return ("; this gradient is read from backward's own step as (before - after) / rate: a "
            "rate backward computes from that state (a schedule, lr / (1 + decay * t)) "
            "steps by another rate after the first call, and the gradient read is scaled by "
            "it; check with the schedule off (decay 0) to tell the two apart")


def _classify(first, second, located):
    """How the second call's gradient went wrong: ``(template with {g}, recognised)``."""
    if first is not None and first.shape == second.shape and np.array_equal(first, second) \
            and np.any(first):
        return "the second call returned the first call's {g}", True
    if located:
        index = tuple(np.array([i for i, _, _ in located]).T)
        num = np.array([n for _, n, _ in located])
        ana = np.array([a for _, _, a in located])
        scale = max(float(np.max(np.abs(num))), float(np.max(np.abs(ana))), 1e-300)

        def close(a, b):
            return bool(np.all(np.abs(a - b) <= 1e-4 * np.abs(b) + 1e-8 * scale))
        if first is not None and first.shape == second.shape and close(ana - first[index], num):
            return ("{g} accumulates into a persistent buffer: the second call returned the "
                    "first call's {g} plus its own"), True
        if close(ana, 2.0 * num):
            return "{g} is scaled by the number of calls: 2x on the second call", True
    worst = ""
    if located:
        index, num, ana = max(located, key=lambda e: abs(e[1] - e[2]))
        worst = f" (element {index}: numerical {num:.6g}, analytic {ana:.6g})"
    return ("the second call's {g} fails the finite-difference check at the check's own "
            "input and parameters after a training step moved the state" + worst
            + ", although the check's own call passes"), False


def first_input(x, rng):
    """The first call's input: ``x`` with its batch reversed and, for a batch of three or
    more, its first row (``x``'s last) replaced by a copy of its second; else (a batch of
    one, or one its reversal leaves as it is) ``x`` scaled by ``1 +- 0.01``.

    Every row is one of ``x``'s, so an input whose rows must be probabilities, one-hot
    or labels stays valid, while the batch statistics differ from ``x``'s (a batch only
    reversed has ``x``'s own mean and variance: a backward reading the previous batch's
    would pass); a batch of two is only reversed. Also the input of the forward call
    that creates parameters made by the first forward (:func:`gradcheck.check.check_layer`):
    not the check's own ``x``, so a forward that caches its first input is seen.
    """
    if x.ndim and len(x) > 1:
        order = np.arange(len(x))[::-1].copy()
        if len(x) > 2:
            order[0] = order[1]
        x1 = np.ascontiguousarray(x[order])
        if not np.array_equal(x1, x):
            return x1
    if x.dtype.kind in "fc":
        signs = rng.choice(np.array([-1.0, 1.0]), size=x.shape)
        return (x * (1.0 + LEARNING_RATE * signs)).astype(x.dtype, copy=False)
    return x.copy()


def _same(a, b):
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=False)


def _max_diff(a, b):
    return float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")
