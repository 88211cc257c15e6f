"""``GradCheckReport._repr_html_``: valid HTML, every target, a heat map where one fails."""

import base64
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from gradcheck import check_layer
from gradcheck.render import COLUMNS
from layers import BatchNormalization

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
VOID = {"img", "br", "hr", "meta", "input", "col", "wbr"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Tree(HTMLParser):
    """Checks that every element is closed in order; collects cells, images and classes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.cells, self.images, self.classes = [], [], [], [], []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.classes.append((tag, attrs.get("class", "")))
        if tag == "img":
            self.images.append(attrs)
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag == "td":
            self._cell = [attrs.get("class", ""), ""]

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag == "td" and self._cell is not None:
            self.cells.append(tuple(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


def _parse(text):
    tree = _Tree()
    tree.feed(text)
    tree.close()
    assert not tree.errors and not tree.stack, (tree.errors, tree.stack)
    return tree


def _broken_swish():
    sys.path.insert(0, str(EXAMPLES))
    try:
        from my_layers import make_broken_swish
    finally:
        sys.path.remove(str(EXAMPLES))
    return check_layer(*make_broken_swish())


def test_a_passing_report_is_a_valid_table_of_every_target():
    rng = np.random.default_rng(0)
    bn = BatchNormalization(rng.uniform(0.5, 1.5, 4), rng.normal(size=4))
    report = check_layer(bn, rng.normal(size=(6, 4)))
    tree = _parse(report._repr_html_())
    targets = [text for cls, text in tree.cells if cls == "gc-target"]
    assert targets == [r.name for r in report.results] == ["x", "gamma", "beta"]
    verdicts = [text for cls, text in tree.cells if cls == "gc-verdict"]
    assert verdicts == ["PASS"] * 3
    headers = {f"gc-{c.key}" for c in COLUMNS}
    assert headers <= {cls for cls, _ in tree.cells}
    assert not tree.images and ("table", "gc-heatmap") not in tree.classes


def test_a_failing_target_gets_an_inline_png_heat_map():
    pytest.importorskip("matplotlib")
    report = _broken_swish()
    tree = _parse(report._repr_html_())
    assert [t for c, t in tree.cells if c == "gc-verdict"] == ["FAIL", "PASS"]
    (image,) = tree.images  # only the failing target 'x'
    assert image["class"] == "gc-heatmap" and image["alt"].endswith(" of x")
    header, data = image["src"].split(",", 1)
    assert header == "data:image/png;base64"
    assert base64.b64decode(data)[:8] == PNG_SIGNATURE


def test_without_matplotlib_the_heat_map_is_an_html_table(monkeypatch):
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    report = _broken_swish()
    tree = _parse(report._repr_html_())
    assert not tree.images and ("table", "gc-heatmap") in tree.classes
    heat = [c for c in tree.cells if c[0] == ""]  # the heat map's cells have no class
    assert len(heat) == report.results[0].numerical.size  # 10 x 6: every element shown


def test_the_worst_element_is_outlined_and_the_largest_error_is_the_reddest(monkeypatch):
    from gradcheck.notebook import _table, _error_grid

    report = _broken_swish()
    grid, _, worst = _error_grid(report.results[0])
    html, shown = _table(grid, worst)
    assert worst == tuple(report.results[0].worst_index) and shown == ""
    assert html.count("outline:") == 1 and "rgba(207,34,46,1.00)" in html
