"""JUnit XML for CI dashboards (the Jenkins/Ant format), built with the standard library.

One ``<testcase>`` per checked target of every check (``classname`` = the
check's label, ``name`` = ``"<target> <shape> <mode>"``, ``file`` and ``line``
= the layer's ``backward``, as pytest's JUnit files and GitLab read them); a
failing target carries a ``<failure>`` whose text is the check's report; an
INCONCLUSIVE target (the check could not have caught an error of practical
size) is a ``<failure type="Inconclusive">`` when it fails the run, and
``<skipped>`` when the run lets it pass (``inconclusive="pass"``); a failing
finding not tied to a target (non-deterministic forward, forward that modifies
a parameter) is a testcase of its own named ``"self-checks <shape> <mode>"``;
a case that could not run (a layer that breaks the protocol, a factory that
raises) is a testcase ``"could not run"`` with an ``<error>``. Warnings go to ``<system-out>``.
"""

import datetime
import socket
import xml.etree.ElementTree as ET

from gradcheck.gate.annotations import relative_path
from gradcheck.gate.tracebacks import user_traceback
from gradcheck.render import failure_headline, failure_text

__all__ = ["junit_xml"]

#: Width of the report text in a failure (not the terminal's: the file is read elsewhere).
_TEXT_WIDTH = 100


def _shape(report):
    return "(" + ", ".join(map(str, report.input_shape)) + ("," if len(report.input_shape) == 1
                                                            else "") + ")"


def _target_line(report, r):
    """The failure's ``message``: the headline line of target ``r``."""
    return next(line.strip() for line in failure_headline(report)
                if line.strip().startswith(f"target {r.name!r}"))


def _testcase(suite, classname, name, seconds, where=None):
    attrs = {"classname": classname, "name": name, "time": f"{seconds:.3f}"}
    if where is not None:
        attrs.update(file=relative_path(where.path), line=str(where.line))
    return ET.SubElement(suite, "testcase", attrs)


def _target_outcome(case, report, r, findings):
    """Write one target's ``<failure>``, ``<skipped>`` and ``<system-out>`` (its notes)
    into ``case``; return ``"failure"``, ``"skipped"`` or ``"passed"``."""
    failing = [f for f in findings if f.failure]
    inconclusive = r.verdict == "INCONCLUSIVE"
    outcome = "passed"
    if r.verdict == "FAIL" or failing or (inconclusive and not report.passed):
        outcome = "failure"
        message = _target_line(report, r) if r.verdict != "PASS" else failing[0].message
        failure = ET.SubElement(case, "failure", message=message,
                                type="Inconclusive" if inconclusive and not failing
                                else "GradientCheckError")
        failure.text = failure_text(report, width=_TEXT_WIDTH)
    elif inconclusive:
        outcome = "skipped"
        ET.SubElement(case, "skipped", message="inconclusive: " + (
            r.inconclusive or "the check could not have caught an error of practical size"))
    notes = [f.message for f in findings if not f.failure]
    if notes:
        ET.SubElement(case, "system-out").text = "\n".join(notes)
    return outcome


def junit_xml(outcomes, *, name="gradcheck", properties=None, timestamp=None, errors=()):
    """The JUnit XML document of a gate run, as a string.

    Parameters
    ----------
    outcomes : iterable of (label, GradCheckReport, seconds[, source])
        Every check of the run with the time it took, and optionally its
        source lines (:func:`gradcheck.gate.annotations.source_of`): the
        test cases then carry the ``file`` and ``line`` of ``backward``.
    name : str
        The test suite's name.
    properties : dict, optional
        Run-wide settings (method, seed, ...), written as ``<property>``.
    timestamp : datetime.datetime, optional
        When the run started (default: now).
    errors : iterable of (str, Exception)
        Cases that could not run (a layer that breaks the protocol, a factory
        that raises, an interrupted run's current case): one ``<testcase>``
        each, with an ``<error>`` whose text is the traceback of the user's
        code when it raised (the exception's ``__cause__``).

    Returns
    -------
    str
        ``<?xml ...?><testsuites><testsuite>...</testsuite></testsuites>``.
    """
    timestamp = timestamp or datetime.datetime.now()
    root = ET.Element("testsuites", name=name)
    suite = ET.SubElement(root, "testsuite", name=name,
                          timestamp=timestamp.replace(microsecond=0).isoformat(),
                          hostname=socket.gethostname() or "localhost")
    if properties:
        props = ET.SubElement(suite, "properties")
        for key, value in properties.items():
            ET.SubElement(props, "property", name=str(key), value=str(value))
    tests = failures = skipped = 0
    total_time = 0.0
    for label, report, seconds, *source in outcomes:
        where = ((source[0] if source else None) or {}).get("backward")
        total_time += seconds
        shape_mode = f"{_shape(report)} {report.mode}"
        findings = {}
        for f in report.findings:
            findings.setdefault(f.target, []).append(f)
        per_case = seconds / max(1, len(report.results))
        for r in report.results:
            case = _testcase(suite, label, f"{r.name} {shape_mode}", per_case, where)
            tests += 1
            outcome = _target_outcome(case, report, r, findings.get(r.name, ()))
            failures += outcome == "failure"
            skipped += outcome == "skipped"
        checked = {r.name for r in report.results}
        loose = [f for t, fs in findings.items() if t not in checked for f in fs]
        if any(f.failure for f in loose):
            case = _testcase(suite, label, f"self-checks {shape_mode}", 0.0, where)
            tests += 1
            failures += 1
            first = next(f for f in loose if f.failure)
            failure = ET.SubElement(case, "failure", message=first.message, type=first.kind)
            failure.text = failure_text(report, width=_TEXT_WIDTH)
    errors = list(errors)
    for label, exc in errors:
        case = _testcase(suite, label, "could not run", 0.0)
        error = ET.SubElement(case, "error", message=str(exc), type=type(exc).__name__)
        if exc.__cause__ is not None:  # the user's code raised: its frames
            error.text = user_traceback(exc.__cause__)
    tests += len(errors)
    for element in (root, suite):
        element.set("tests", str(tests))
        element.set("failures", str(failures))
        element.set("errors", str(len(errors)))
        element.set("time", f"{total_time:.3f}")
    suite.set("skipped", str(skipped))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
