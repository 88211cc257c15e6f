"""``gradcheck plot``: the error-vs-step sweep and the PNG."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from gradcheck.gate.cli import main
from gradcheck.gate.plot import step_sweep
from layers import Tanh

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
from my_layers import make_broken_swish, make_swish  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_sweep_of_a_correct_layer_is_a_v():
    layer, x = make_swish()
    sweep = step_sweep(layer, x, methods=("forward", "central"))
    for method, order in (("forward", 1), ("central", 2)):
        errs = sweep.errors[method]
        best = int(np.argmin(errs))
        assert 0 < best < len(errs) - 1
        assert errs[0] > 1e3 * errs[best] and errs[-1] > 1e3 * errs[best]
        r = sweep.default[method]
        assert r.passed and r.max_rel_error < 10 * errs[best] + 1e-12
        # the right arm: truncation error of order p (slope p on log-log axes)
        slope = np.polyfit(np.log10(sweep.steps[-4:]), np.log10(errs[-4:]), 1)[0]
        assert abs(slope - order) < 0.4, (method, slope)


def test_sweep_of_a_wrong_backward_is_flat_above_the_tolerance():
    layer, x = make_broken_swish()
    sweep = step_sweep(layer, x, steps=np.logspace(-10, -2, 5))
    errs, r = sweep.errors["central"], sweep.default["central"]
    assert not r.passed
    assert errs.min() > 1e-2 and errs.max() < 2 * errs.min()


def test_sweep_leaves_the_layer_unchanged():
    layer, x = make_swish()
    beta, x0 = layer.beta.copy(), x.copy()
    step_sweep(layer, x, target="beta", steps=[1e-6, 1e-3])
    assert np.array_equal(layer.beta, beta) and np.array_equal(x, x0)


@pytest.fixture
def no_matplotlib(monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError


def test_without_matplotlib_exit_2_with_the_install_command(no_matplotlib, tmp_path, capsys):
    assert main(["plot", "Tanh", "-o", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert "needs matplotlib" in err and "pip install matplotlib" in err
    assert not (tmp_path / "f.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["plot", "NoSuchLayer"], "no built-in layer 'NoSuchLayer'"),
    (["plot", "Tanh", "--wrt", "gamma"], "wrt names 'gamma'"),
    (["plot", "nosuchmodule_zz:make"], "cannot import module"),
    (["plot", f"{EXAMPLES / 'my_layers.py'}:make_scale"], "--shape"),
])
def test_plot_usage_errors_exit_2(argv, message, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main([*argv, "-o", str(tmp_path / "f.png")]) == 2
    assert message in capsys.readouterr().err


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "steps.png"
    assert main(["plot", "Tanh", "--method", "central", "--method", "forward", "-o",
                 str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE and out.stat().st_size > 20_000
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and re.search(r"central: default step [0-9.e-]+ -> PASS", text)


def test_plot_of_a_failing_target_adds_the_heatmap(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    ok, bad = tmp_path / "ok.png", tmp_path / "bad.png"
    assert main(["plot", f"{EXAMPLES / 'my_layers.py'}:make_swish", "-o", str(ok)]) == 0
    assert main(["plot", f"{EXAMPLES / 'my_layers.py'}:make_broken_swish", "-o", str(bad)]) == 0
    # the failing target's figure has a second panel: wider
    assert imread(bad).shape[1] > 1.3 * imread(ok).shape[1]


def test_plot_of_a_parameter_with_a_shape(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "scale.png"
    assert main(["plot", f"{EXAMPLES / 'my_layers.py'}:make_scale", "--shape", "6,4",
                 "--wrt", "gamma", "--eval", "--heatmap", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_the_checking_command_still_takes_a_target_after_plot_was_added(capsys):
    assert main([f"{EXAMPLES / 'my_layers.py'}:make_swish", "-q"]) == 0
    assert "1 check (2 targets): 1 passed" in capsys.readouterr().out


def test_plot_needs_a_target(capsys):
    with pytest.raises(SystemExit) as info:
        main(["plot"])
    assert info.value.code == 2
    assert "TARGET" in capsys.readouterr().err


def test_tanh_sweep_checks_only_x():
    sweep = step_sweep(Tanh(), np.linspace(-1, 1, 6).reshape(2, 3), steps=[1e-5])
    assert sweep.target == "x" and sweep.mode == "train" and sweep.errors["central"].shape == (1,)
