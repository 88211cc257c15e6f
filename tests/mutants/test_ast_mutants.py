"""The AST mutation run: no unexplained survivor; its harness and extra configurations."""

import numpy as np
import pytest

from gradcheck import check_layer
from mutants import ast_mutants
from mutants.corpus import EXTRA_SPECS


@pytest.mark.parametrize("test", [t for ts in ast_mutants.KILL_TESTS.values() for t in ts],
                         ids=lambda t: t.__name__)
def test_kill_tests_pass_on_the_correct_layers(test):
    test()


@pytest.mark.parametrize("spec, shape, mode", [
    pytest.param(s, shape, m, id=f"{s.name}-{shape}-{'train' if m else 'eval'}")
    for s in EXTRA_SPECS for shape in s.shapes for m in s.modes])
def test_extra_configurations_pass(spec, shape, mode):
    layer, x = spec.make(shape, np.random.default_rng(0), mode)
    report = check_layer(layer, x, train_flg=mode)
    assert report.passed and not any(r.vacuous for r in report.results), str(report)


def test_harness_leaves_correct_code_passing():
    """Recompiled unchanged, every mutated function survives (the harness breaks nothing)."""
    for mutant, func in ast_mutants.originals():
        verdict, detail = ast_mutants.run(mutant, func)
        assert verdict == "survived", (mutant.module, mutant.owner, mutant.func, detail)


def test_every_operator_generates_mutants():
    ops = {m.operator for m, _ in ast_mutants.generate()}
    assert ops >= {"binop", "drop-term", "augassign", "axis", "constant", "transpose",
                   "reduction", "compare", "negation"}


@pytest.mark.slow
def test_no_unexplained_survivor(capsys):
    status = ast_mutants.main([])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "0 unexplained" in out
