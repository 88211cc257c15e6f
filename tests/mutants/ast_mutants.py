"""Mutation testing of the built-in layers' backward passes, with a small AST mutator.

    python tests/mutants/ast_mutants.py [--verbose] [--only NAME]

For every ``backward``/``_backward`` method of a class in ``layers/*.py`` and
for ``col2im`` (the fold every convolution and pooling backward goes
through), every single-operator mutant is generated from the source:

======================  =================================================
operator                 mutation
======================  =================================================
``binop``                ``+`` <-> ``-``, ``*`` <-> ``/``, ``**`` -> ``*``
``augassign``            ``+=`` <-> ``-=``, ``*=`` <-> ``/=``
``drop-term``            ``a + b`` / ``a - b`` -> ``a``, -> ``b``;
                         ``a * b`` / ``a / b`` -> ``a`` (a dropped factor)
``negation``             ``-a`` -> ``a``
``axis``                 ``axis=0`` <-> ``axis=1``, ``axis=-1`` -> ``0``
``constant``             an int ``c`` -> ``c + 1``; a float ``c`` -> ``c + 1``
                         and ``1.01 c`` (a 1 % change)
``transpose``            ``a.T`` -> ``a``
``reduction``            ``np.sum`` <-> ``np.mean``, ``.sum`` <-> ``.mean``
``compare``              ``==`` <-> ``!=``, ``<`` <-> ``<=``, ...
======================  =================================================

Each mutant is patched into its class (so subclasses and children of
:class:`~layers.Sequential` inherit it) and checked with
``check_layer(method="central")`` on every built-in spec that uses the
class (``gradcheck.gate.suite.SPECS`` and ``mutants.corpus.EXTRA_SPECS``), in every
shape and mode of the spec, and by the behaviour tests of :data:`KILL_TESTS`
(properties a gradient check cannot see, such as a default argument). A mutant is *killed* when some
check FAILs or raises :class:`~gradcheck.GradCheckInputError` (a protocol
error: wrong shape or dtype of a gradient, a backward that raises). A
*survivor* passes every check: either it is *equivalent* (the same gradient
for every input the layer accepts, or a change in a branch no built-in
configuration reaches), which :data:`EXPLAINED` records with the reason, or
it shows a gap in the checks.
"""

import argparse
import ast
import contextlib
import copy
import importlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import numpy as np  # noqa: E402

from gradcheck import GradCheckInputError, check_layer  # noqa: E402
from layers.sequential import Sequential  # noqa: E402
from gradcheck.gate.suite import SPECS  # noqa: E402
from mutants.corpus import EXTRA_SPECS  # noqa: E402

#: Modules whose backward passes are mutated (``layers/<name>.py``).
MODULES = ("affine", "activations", "batchnorm", "conv", "dropout", "loss", "normalization",
           "pooling", "sequential", "_im2col")
#: Method names mutated inside classes; module-level functions mutated.
METHODS = ("backward", "_backward")
FUNCTIONS = {"_im2col": ("col2im",)}

_BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
               ast.Pow: ast.Mult}
_CMP_SWAP = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.LtE, ast.LtE: ast.Lt,
             ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_REDUCTIONS = {"sum": "mean", "mean": "sum"}


@dataclass
class AstMutant:
    """One mutant: where, what, and the compiled function."""

    module: str
    owner: str  # class name, or "" for a module-level function
    func: str
    lineno: int
    col: int
    operator: str
    before: str
    after: str
    statement: str = ""

    @property
    def id(self):
        owner = f"{self.owner}." if self.owner else ""
        return (f"{self.module}:{owner}{self.func}:{self.lineno}:{self.col}:"
                f"{self.operator}:{self.after}")


def _variants(node):
    """``(operator, replacement)`` pairs for one AST node."""
    out = []
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAP:
        out.append(("binop", ast.BinOp(node.left, _BINOP_SWAP[type(node.op)](), node.right)))
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        out += [("drop-term", node.left), ("drop-term", node.right)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
        out.append(("drop-term", node.left))
    if isinstance(node, ast.AugAssign) and type(node.op) in _BINOP_SWAP:
        out.append(("augassign", ast.AugAssign(node.target, _BINOP_SWAP[type(node.op)](),
                                               node.value)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
            and not isinstance(node.operand, ast.Constant):
        out.append(("negation", node.operand))
    if isinstance(node, ast.keyword) and node.arg == "axis":
        v = node.value
        val = None
        if isinstance(v, ast.Constant) and isinstance(v.value, int):
            val = v.value
        elif isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.USub) \
                and isinstance(v.operand, ast.Constant):
            val = -v.operand.value
        if val is not None:
            new = {0: 1, 1: 0}.get(val, 0)
            out.append(("axis", ast.keyword("axis", ast.Constant(new))))
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        out.append(("constant", ast.Constant(node.value + 1)))
        if isinstance(node.value, float) and node.value != 0.0:
            out.append(("constant", ast.Constant(node.value * 1.01)))
    if isinstance(node, ast.Attribute) and node.attr == "T":
        out.append(("transpose", node.value))
    if isinstance(node, ast.Attribute) and node.attr in _REDUCTIONS:
        out.append(("reduction", ast.Attribute(node.value, _REDUCTIONS[node.attr], node.ctx)))
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP_SWAP:
        out.append(("compare", ast.Compare(node.left, [_CMP_SWAP[type(node.ops[0])]()],
                                           node.comparators)))
    return out


def _replace(tree, old, new):
    """Replace node ``old`` (by identity) with ``new`` in ``tree``."""
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return
    raise LookupError("node not found")


def _targets():
    """``(module, owner_class_or_None, function_def_node)`` for every mutated function."""
    for modname in MODULES:
        path = ROOT / "layers" / f"{modname}.py"
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name in METHODS:
                        yield modname, node.name, item
            elif isinstance(node, ast.FunctionDef) and node.name in FUNCTIONS.get(modname, ()):
                yield modname, "", node


def originals():
    """Every mutated function unchanged, recompiled by the same route as a mutant."""
    for modname, owner, fdef in _targets():
        module = importlib.import_module(f"layers.{modname}")
        fcopy = copy.deepcopy(fdef)
        fcopy.decorator_list = []
        ns = dict(vars(module))
        exec(compile(ast.Module(body=[fcopy], type_ignores=[]), "<original>", "exec"), ns)
        yield AstMutant(modname, owner, fdef.name, fdef.lineno, 0, "none", "", ""), \
            ns[fdef.name]


def generate():
    """Every mutant as ``(AstMutant, compiled function)``."""
    for modname, owner, fdef in _targets():
        module = importlib.import_module(f"layers.{modname}")
        sites = [n for n in ast.walk(fdef) if n is not fdef]
        # skip the docstring
        doc = fdef.body[0] if fdef.body and isinstance(fdef.body[0], ast.Expr) \
            and isinstance(fdef.body[0].value, ast.Constant) else None
        skip = set(map(id, ast.walk(doc))) if doc is not None else set()
        for k, node in enumerate(sites):
            if id(node) in skip:
                continue
            for operator, replacement in _variants(node):
                fcopy = copy.deepcopy(fdef)
                target = [n for n in ast.walk(fcopy) if n is not fcopy][k]
                new = copy.deepcopy(replacement)
                # the replacement was built from the original's children: map them across
                new = _rebuild(replacement, node, target)
                _replace(fcopy, target, new)
                fcopy.decorator_list = []
                mod = ast.Module(body=[fcopy], type_ignores=[])
                ast.fix_missing_locations(mod)
                ns = dict(vars(module))
                exec(compile(mod, f"<mutant {modname}.{fdef.name}>", "exec"), ns)
                before = ast.unparse(node)
                after = ast.unparse(new)
                line = getattr(node, "lineno", fdef.lineno)
                stmt = _statement(fcopy, new)
                m = AstMutant(modname, owner, fdef.name, line, getattr(node, "col_offset", 0),
                              operator, before, after, stmt)
                yield m, ns[fdef.name]


def _statement(tree, node):
    """The innermost statement of ``tree`` containing ``node``, unparsed on one line."""
    best = None
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.stmt) and stmt is not tree \
                and any(n is node for n in ast.walk(stmt)):
            best = stmt
    if best is None:
        return ""
    if isinstance(best, (ast.If, ast.For, ast.While, ast.With, ast.Try)):
        head = ast.unparse(best).splitlines()[0]
        return head
    return " ".join(ast.unparse(best).split())


def _rebuild(replacement, original, copied):
    """``replacement`` (made of ``original``'s children) re-made from ``copied``'s children."""
    mapping = dict(zip(map(id, ast.walk(original)), ast.walk(copied)))

    def clone(n):
        if id(n) in mapping:
            return mapping[id(n)]
        if isinstance(n, ast.AST):
            kw = {}
            for field, value in ast.iter_fields(n):
                if isinstance(value, list):
                    kw[field] = [clone(v) for v in value]
                else:
                    kw[field] = clone(value)
            new = type(n)(**kw)
            return ast.copy_location(new, original) if hasattr(original, "lineno") else new
        return n

    return clone(replacement)


@contextlib.contextmanager
def patched(mutant, func):
    """Install ``func`` in place of the original for the duration of the block."""
    module = importlib.import_module(f"layers.{mutant.module}")
    saved = []
    if mutant.owner:
        cls = getattr(module, mutant.owner)
        saved.append((cls, mutant.func, cls.__dict__[mutant.func]))
        func.__qualname__ = f"{mutant.owner}.{mutant.func}"
        setattr(cls, mutant.func, func)
    else:
        for name in ("layers._im2col", "layers.conv", "layers.pooling"):
            m = importlib.import_module(name)
            if getattr(m, mutant.func, None) is getattr(module, mutant.func):
                saved.append((m, mutant.func, getattr(m, mutant.func)))
        for m, name, _ in saved:
            setattr(m, name, func)
    try:
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


def _classes_in(layer):
    out = set(type(layer).__mro__)
    if isinstance(layer, Sequential):
        for child in layer.layers:
            out |= _classes_in(child)
    return out


def relevant_cases(mutant):
    """``(spec, shape, train_flg)`` of every built-in configuration that runs the mutant."""
    cases = []
    for spec in SPECS + EXTRA_SPECS:
        for shape in spec.shapes:
            layer, _ = spec.make(tuple(shape), np.random.default_rng(0), True)
            classes = _classes_in(layer)
            if mutant.owner:
                cls = getattr(importlib.import_module(f"layers.{mutant.module}"), mutant.owner)
                uses = cls in classes and _resolves_to(classes, cls, mutant.func)
            else:
                uses = any(c.__module__ in ("layers.conv", "layers.pooling") for c in classes)
            if uses:
                cases += [(spec, tuple(shape), mode) for mode in spec.modes]
    return cases


def _resolves_to(classes, cls, func):
    """Some class in ``classes`` that subclasses ``cls`` gets ``func`` from ``cls``."""
    for c in classes:
        if isinstance(c, type) and issubclass(c, cls):
            for k in c.__mro__:
                if func in k.__dict__:
                    if k is cls:
                        return True
                    break
    return False


def run(mutant, func, seed=0):
    """``(verdict, detail)``: ``"killed"``, ``"error"`` (killed by an exception) or ``"survived"``."""
    cases = relevant_cases(mutant)
    if not cases:
        return "unreached", "no built-in configuration runs this code"
    with patched(mutant, func):
        for test in KILL_TESTS.get(mutant.module, ()):
            try:
                test()
            except Exception as exc:
                return "killed", f"{test.__name__}: {type(exc).__name__}"
        for spec, shape, mode in cases:
            layer, x = spec.make(shape, np.random.default_rng(seed), mode)
            try:
                report = check_layer(layer, x, train_flg=mode, seed=seed, **spec.options_for(mode))
            except GradCheckInputError as exc:
                return "error", f"{spec.name} {shape}: {type(exc).__name__}: {exc}"[:160]
            if not report.passed:
                bad = [r.name for r in report.results if not r.passed]
                return "killed", f"{spec.name} {shape} {'train' if mode else 'eval'}: {bad}"
    return "survived", f"{len(cases)} checks passed"


_RESHAPE_NEG = ("numpy takes any negative size in reshape as the inferred one (-2 acts "
                "like -1): equivalent")
_FOLD = ("the first size of this intermediate reshape is irrelevant: col2im reshapes `dcol` "
         "by its size again; a size that does not divide raises (killed), one that does is "
         "equivalent")
_BUFFER = ("col2im's scratch image only needs to be at least H + 2 pad + stride - 1 tall/wide; "
           "a larger one is cropped to [pad, H + pad): equivalent")

#: Survivors that are equivalent mutants, with the reason. Keys: see :func:`explain`.
EXPLAINED = {
    "batchnorm:BatchNormalization.backward:constant:1 -> 2": _RESHAPE_NEG,
    "conv:Convolution.backward:constant:1 -> 2": _RESHAPE_NEG,
    "normalization:SpatialBatchNormalization.backward:constant:1 -> 2": _RESHAPE_NEG,
    "normalization:GroupNorm.backward:constant:1 -> 2": _RESHAPE_NEG,
    "pooling:Pooling.backward:constant:1 -> 2": _RESHAPE_NEG + " (both reshapes)",
    "pooling:Pooling.backward:drop-term:dout.shape[0] * dout.shape[2] * dout.shape[3] -> "
    "dout.shape[0] * dout.shape[2]": _FOLD,
    "pooling:Pooling.backward:drop-term:dout.shape[0] * dout.shape[2] -> dout.shape[0]": _FOLD,
    "pooling:Pooling.backward:constant:0 -> 1": _FOLD,
    "pooling:Pooling.backward:constant:2 -> 3": _FOLD,
    "pooling:Pooling.backward:axis:axis=1 -> axis=0":
        "np.repeat of a column (M, 1) along axis 0 lays out the same values in the same "
        "order as along axis 1, and the result is reshaped: equivalent",
    "_im2col:col2im:binop:H + 2 * pad + stride - 1 -> H + 2 * pad + stride + 1": _BUFFER,
    "_im2col:col2im:binop:W + 2 * pad + stride - 1 -> W + 2 * pad + stride + 1": _BUFFER,
    "_im2col:col2im:drop-term:H + 2 * pad + stride - 1 -> H + 2 * pad + stride": _BUFFER,
    "_im2col:col2im:drop-term:W + 2 * pad + stride - 1 -> W + 2 * pad + stride": _BUFFER,
    "_im2col:col2im:constant:2 -> 3": _BUFFER,
}


def _softmax_default_dout():
    """``SoftmaxWithLoss.backward()`` is ``backward(1.0)`` (its documented default)."""
    from layers import SoftmaxWithLoss
    layer = SoftmaxWithLoss(np.array([0, 2, 1]))
    layer.forward(np.random.default_rng(0).normal(size=(3, 4)))
    assert np.array_equal(layer.backward(), layer.backward(1.0))


def _col2im_defaults():
    """``col2im(col, shape, fh, fw)`` is the adjoint of ``im2col(x, fh, fw)`` (stride 1, pad 0)."""
    from layers._im2col import col2im, im2col
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 2, 4, 5))
    col = rng.normal(size=im2col(x, 3, 2).shape)
    assert np.isclose(np.sum(im2col(x, 3, 2) * col), np.sum(x * col2im(col, x.shape, 3, 2)))


#: Behaviour a gradient check cannot see, run under every mutant of the module they name.
KILL_TESTS = {"loss": [_softmax_default_dout], "_im2col": [_col2im_defaults]}


def explain(mutant):
    """The recorded reason a survivor is not a gap, or ``None``."""
    key = f"{mutant.module}:{mutant.owner + '.' if mutant.owner else ''}{mutant.func}:" \
          f"{mutant.operator}:{mutant.before} -> {mutant.after}"
    return EXPLAINED.get(key), key


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="print every mutant")
    p.add_argument("--only", default=None, help="only mutants whose id contains this")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    counts, per_op = {}, {}
    survivors = []
    for mutant, func in generate():
        if args.only and args.only not in mutant.id:
            continue
        verdict, detail = run(mutant, func)
        counts[verdict] = counts.get(verdict, 0) + 1
        per_op.setdefault(mutant.operator, {}).setdefault(verdict, 0)
        per_op[mutant.operator][verdict] += 1
        if args.verbose:
            print(f"{verdict:9} {mutant.id}  ({mutant.before} -> {mutant.after}) {detail}")
        if verdict in ("survived", "unreached"):
            survivors.append((mutant, verdict))
    total = sum(counts.values())
    print(f"\n{total} mutants in {time.perf_counter() - t0:.0f} s: " +
          ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    verdicts = ("killed", "error", "survived", "unreached")
    print("\n| operator | " + " | ".join(verdicts) + " |")
    print("|---|" + "---|" * len(verdicts))
    for op, c in sorted(per_op.items()):
        print(f"| {op} | " + " | ".join(str(c.get(v, 0)) for v in verdicts) + " |")
    unexplained = 0
    print("\n| survivor | location | mutation | explanation |")
    print("|---|---|---|---|")
    for mutant, verdict in survivors:
        reason, key = explain(mutant)
        unexplained += reason is None
        owner = f"{mutant.owner}." if mutant.owner else ""
        print(f"| {verdict} | `layers/{mutant.module}.py:{mutant.lineno}` {owner}{mutant.func} "
              f"| {mutant.operator}: `{mutant.before}` -> `{mutant.after}` in "
              f"`{mutant.statement}` "
              f"| {reason or '**UNEXPLAINED**'} |")
    print(f"\n{len(survivors)} survivors, {unexplained} unexplained")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
