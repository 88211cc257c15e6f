"""JUnit XML for CI dashboards (the Jenkins/Ant format), built with the standard library.

One ``<testcase>`` per checked target of every check (``classname`` = the
check's label, ``name`` = ``"<target> <shape> <mode>"``); a failing target
carries a ``<failure>`` whose text is the check's report; a vacuous target
(its check cannot tell a right backward from a wrong one) is ``<skipped>``;
a failing finding not tied to a target (non-deterministic forward, forward
that modifies a parameter) is a testcase of its own named ``"self-checks
<shape> <mode>"``. Warnings go to ``<system-out>``.
"""

import datetime
import socket
import xml.etree.ElementTree as ET

from gradcheck.testing.assertions import failure_message

__all__ = ["junit_xml"]


def _shape(report):
    return "(" + ", ".join(map(str, report.input_shape)) + ("," if len(report.input_shape) == 1
                                                            else "") + ")"


def _target_line(r):
    return (f"target {r.name!r} at index {tuple(r.worst_index)}: numerical "
            f"{r.worst_numerical:.10g}, analytic {r.worst_analytic:.10g} (max abs error "
            f"{r.max_abs_error:.3g}, max rel error {r.max_rel_error:.3g}; atol {r.atol:.2g}, "
            f"rtol {r.rtol:.2g})")


def _testcase(suite, classname, name, seconds):
    return ET.SubElement(suite, "testcase", classname=classname, name=name,
                         time=f"{seconds:.3f}")


def junit_xml(outcomes, *, name="gradcheck", properties=None, timestamp=None):
    """The JUnit XML document of a gate run, as a string.

    Parameters
    ----------
    outcomes : iterable of (label, GradCheckReport, seconds)
        Every check of the run with the time it took.
    name : str
        The test suite's name.
    properties : dict, optional
        Run-wide settings (method, seed, ...), written as ``<property>``.
    timestamp : datetime.datetime, optional
        When the run started (default: now).

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
    for label, report, seconds in outcomes:
        total_time += seconds
        where = f"{_shape(report)} {report.mode}"
        findings = {}
        for f in report.findings:
            findings.setdefault(f.target, []).append(f)
        per_case = seconds / max(1, len(report.results))
        for r in report.results:
            case = _testcase(suite, label, f"{r.name} {where}", per_case)
            tests += 1
            failing = [f for f in findings.get(r.name, ()) if f.failure]
            if not r.passed or failing:
                failures += 1
                message = _target_line(r) if not r.passed else failing[0].message
                failure = ET.SubElement(case, "failure", message=message,
                                        type="GradientCheckError")
                failure.text = failure_message(report)
            elif r.vacuous:
                skipped += 1
                ET.SubElement(case, "skipped", message="vacuous: the gradient is identically "
                              "zero for this dout and input; the check proves nothing")
            notes = [f.message for f in findings.get(r.name, ()) if not f.failure]
            if notes:
                ET.SubElement(case, "system-out").text = "\n".join(notes)
        checked = {r.name for r in report.results}
        loose = [f for t, fs in findings.items() if t not in checked for f in fs]
        if any(f.failure for f in loose):
            case = _testcase(suite, label, f"self-checks {where}", 0.0)
            tests += 1
            failures += 1
            first = next(f for f in loose if f.failure)
            failure = ET.SubElement(case, "failure", message=first.message, type=first.kind)
            failure.text = failure_message(report)
    for element in (root, suite):
        element.set("tests", str(tests))
        element.set("failures", str(failures))
        element.set("errors", "0")
        element.set("time", f"{total_time:.3f}")
    suite.set("skipped", str(skipped))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
