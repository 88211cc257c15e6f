"""pytest plugin of :mod:`gradcheck` (entry point ``pytest11: gradcheck``).

Provides

- the ``gradcheck`` marker, to tag gradient tests (``pytest -m gradcheck``);
  its keyword arguments are defaults of the ``assert_gradients`` fixture:
  ``@pytest.mark.gradcheck(method="richardson")``;
- the fixtures ``assert_gradients`` (:func:`gradcheck.assert_gradients` with
  the marker's defaults) and ``gradcheck_options`` (the options in force);
- the command-line options ``--gradcheck-method``, ``--gradcheck-seed``,
  ``--gradcheck-atol`` and ``--gradcheck-rtol``, validated when pytest parses
  them, which apply to every ``assert_gradients`` call of the run (also under
  ``pytest -n``: each worker parses the same options);
- the hypothesis settings profiles ``gradcheck-ci`` (derandomised, 25
  examples, no deadline) and ``gradcheck-dev`` (200 examples, no deadline):
  ``pytest --hypothesis-profile gradcheck-ci``.

Only public pytest APIs are used.
"""

import pytest

from gradcheck.testing import assertions as _assertions
from gradcheck.gate.options import GATE_OPTIONS

_PREVIOUS_OPTIONS = pytest.StashKey()
_RUN_OPTIONS = pytest.StashKey()


def pytest_addoption(parser):
    group = parser.getgroup("gradcheck", "gradient checks (gradcheck.assert_gradients)")
    for opt in GATE_OPTIONS:
        group.addoption(f"--gradcheck-{opt.flag}", dest=f"gradcheck_{opt.name}", type=opt.parse,
                        default=None, metavar=opt.metavar,
                        help=f"{opt.help}; applies to every assert_gradients call of the run")


def register_hypothesis_profiles():
    """Register the ``gradcheck-ci`` and ``gradcheck-dev`` profiles (if hypothesis is installed)."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # hypothesis is optional
        return
    # from hypothesis's defaults, whatever profile a conftest loaded before us
    base = settings.get_profile("default")
    settings.register_profile("gradcheck-ci", base, max_examples=25, derandomize=True,
                              deadline=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("gradcheck-dev", base, max_examples=200, derandomize=False,
                              deadline=None, print_blob=True)


@pytest.hookimpl(tryfirst=True)  # before hypothesis's plugin loads --hypothesis-profile
def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gradcheck(**options): a gradient test; options (method=, atol=, ...) are "
                   "defaults of the assert_gradients fixture")
    register_hypothesis_profiles()
    options = {}
    for opt in GATE_OPTIONS:
        value = config.getoption(f"gradcheck_{opt.name}")
        if value is not None:
            options[opt.name] = value
    config.stash[_RUN_OPTIONS] = options
    config.stash[_PREVIOUS_OPTIONS] = _assertions._set_run_options(options)


def pytest_unconfigure(config):
    if _PREVIOUS_OPTIONS in config.stash:
        _assertions._set_run_options(config.stash[_PREVIOUS_OPTIONS])
        del config.stash[_PREVIOUS_OPTIONS]


def pytest_report_header(config):
    options = config.stash.get(_RUN_OPTIONS, {})
    if options:
        return "gradcheck: " + " ".join(f"{k}={v}" for k, v in sorted(options.items())) + \
               " for every assert_gradients call"
    return None


def _marker_options(request):
    """The options of the ``gradcheck`` markers on the test (the closest wins).

    A positional argument (``@pytest.mark.gradcheck("central")``) errors the
    test (at its set-up) naming the keyword arguments the marker takes.
    """
    options = {}
    for mark in reversed(list(request.node.iter_markers("gradcheck"))):
        if mark.args:
            pytest.fail(
                f"{request.node.nodeid}: @pytest.mark.gradcheck takes keyword arguments only, "
                "the defaults of assert_gradients (method=, strategy=, atol=, rtol=, seed=, "
                "eps=, ... any keyword of check_layer); got the positional argument(s) "
                f"{', '.join(map(repr, mark.args))}: write e.g. "
                "@pytest.mark.gradcheck(method='central')", pytrace=False)
        _check_marker_keywords(request, mark.kwargs)
        options.update(mark.kwargs)  # the closest marker (the test's own) wins
    return options


def _check_marker_keywords(request, kwargs):
    """Error the test (at its set-up) for a marker keyword ``check_layer`` does not take
    (``methd=``), with the nearest one it does, as the command line does for an option."""
    import inspect

    from gradcheck import check_layer
    from gradcheck.validate import did_you_mean

    known = [n for n, p in inspect.signature(check_layer).parameters.items()
             if p.kind == p.KEYWORD_ONLY]
    unknown = [k for k in kwargs if k not in known]
    if unknown:
        pytest.fail(
            f"{request.node.nodeid}: @pytest.mark.gradcheck got the unknown keyword "
            f"{unknown[0]!r}{did_you_mean(unknown[0], known)}; it takes the keywords of "
            f"check_layer: {', '.join(known)}", pytrace=False)


@pytest.fixture
def gradcheck_options(request):
    """The options an ``assert_gradients`` call in this test uses, as a dict.

    The ``gradcheck`` marker's keyword arguments, overridden by the
    ``--gradcheck-*`` command-line options.
    """
    return {**_marker_options(request), **request.config.stash.get(_RUN_OPTIONS, {})}


@pytest.fixture
def assert_gradients(request):
    """:func:`gradcheck.assert_gradients` with the ``gradcheck`` marker's options as defaults.

    ``assert_gradients(layer, x, **options)`` returns the report or raises
    :class:`gradcheck.GradientCheckError` with the report's table.
    """
    defaults = _marker_options(request)

    def check(layer, x, **options):
        __tracebackhide__ = True
        return _assertions.assert_gradients(layer, x, **{**defaults, **options})

    return check
