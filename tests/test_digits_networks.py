"""Two networks on real images (scikit-learn's digits), checked end to end."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gradcheck import check_layer

pytest.importorskip("sklearn", reason="the digits networks need scikit-learn "
                    "(pip install -e '.[examples]')")

_path = Path(__file__).resolve().parents[1] / "examples" / "digits_networks.py"
_spec = importlib.util.spec_from_file_location("digits_networks", _path)
digits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(digits)


@pytest.mark.parametrize("train_flg", [True, False])
@pytest.mark.parametrize("make", [digits.make_mlp, digits.make_convnet], ids=["mlp", "convnet"])
def test_network_on_real_images_passes_end_to_end(make, train_flg):
    net, x = make(train_flg)
    assert x.min() >= 0 and x.max() <= 1 and len(np.unique(x)) > 5  # real grey levels
    report = check_layer(net, x, train_flg=train_flg)
    # the first bias feeds a train-mode batch normalisation: its gradient is zero for every
    # input, so without expect_zero it is (rightly) inconclusive
    if train_flg:
        assert [r.name for r in report.results if r.verdict == "INCONCLUSIVE"] == ["b_0"]
        report = check_layer(net, x, train_flg=train_flg, expect_zero=["b_0"])
    assert report.passed, str(report)
    names = [r.name for r in report.results]
    assert names[0] == "x" and any(n.startswith("gamma") for n in names)


def test_a_bug_in_one_layer_fails_that_layers_parameter():
    net, x = digits.make_convnet(True)
    bn = net.layers[1]
    original = bn._backward

    def wrong(dout):
        dx = original(dout)
        bn.dgamma = bn.dgamma * 1.01
        return dx
    bn._backward = wrong
    report = check_layer(net, x, expect_zero=["b_0"])
    failed = [r.name for r in report.results if not r.passed]
    assert failed == ["gamma_1"], str(report)


def test_the_builtin_suite_includes_the_networks():
    from gradcheck.gate.suite import SPECS
    assert {"Digits-MLP", "Digits-ConvNet"} <= {s.name for s in SPECS}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["forward", "central4", "richardson", "complex"])
@pytest.mark.parametrize("make", [digits.make_mlp, digits.make_convnet], ids=["mlp", "convnet"])
def test_networks_pass_every_method(make, method):
    for train_flg in (True, False):
        net, x = make(train_flg)
        report = check_layer(net, x, train_flg=train_flg, method=method,
                             expect_zero=["b_0"] if train_flg else ())
        assert report.passed, str(report)
