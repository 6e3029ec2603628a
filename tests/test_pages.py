"""Pages that read offline (``coursekit lessons --html`` / ``--slides``): formulas typeset to MathML when the page is
built, widgets replaced by what they drew, no script from a CDN, slides cut at the lesson's headings; and, where a
Chromium is installed (CI installs Debian's), the pages as a reader sees them, opened with the network off."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from coursekit.pages import render, slide_types, static_widgets, typeset_math

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# .ci/run installs Debian's chromium and sets this: there the browser checks must run, not skip
REQUIRED = os.environ.get("COURSEKIT_REQUIRE_CHROMIUM") == "1"
# Injected into a copy of a page: once it has loaded, what a reader would see, as JSON in <pre id="page-check">.
CHECK = """<script>
window.addEventListener("load", function () { setTimeout(function () {
  var box = function (e) { var b = e.getBoundingClientRect(); return b.width > 0 && b.height > 0; };
  var maths = Array.from(document.querySelectorAll("math")), imgs = Array.from(document.querySelectorAll("img"));
  var subs = Array.from(document.querySelectorAll("msub"));
  var prose = Array.from(document.querySelectorAll(".jp-MarkdownOutput")).map(function (e) {
    var c = e.cloneNode(true); c.querySelectorAll("code, pre").forEach(function (x) { x.remove(); }); return c.textContent;
  }).join("\\n");
  var r = {math: maths.length, math_without_box: maths.filter(function (m) { return !box(m); }).length,
           subscripts: subs.length,
           subscripts_not_lowered: subs.filter(function (s) {
             return s.children.length < 2 || !(s.children[1].getBoundingClientRect().top >
                                               s.children[0].getBoundingClientRect().top); }).length,
           tex_left: (prose.match(/\\$[^$\\n]{1,200}\\$/g) || []).length,
           images: imgs.length, images_broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length,
           images_without_box: imgs.filter(function (i) { return !box(i); }).length,
           reveal_ready: !!document.querySelector(".reveal.ready"),
           slides: document.querySelectorAll(".reveal .slides section").length};
  var pre = document.createElement("pre"); pre.id = "page-check"; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
}, 300); });
</script>"""


def read_offline(page: Path) -> dict:
    """Open a copy of ``page`` in headless Chromium with every host unresolvable and a dead proxy (no network), and
    return what the injected check saw."""
    if not CHROMIUM:
        if REQUIRED:
            pytest.fail("COURSEKIT_REQUIRE_CHROMIUM=1 but no chromium on PATH")
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    probe = page.with_name(f"probe-{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK + "</body>"), encoding="utf-8")
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
                          "--proxy-server=http://127.0.0.1:9", "--virtual-time-budget=10000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="page-check">([^<]*)</pre>', out.stdout)
    assert found, f"the check did not run in the page: {out.stderr[-2000:]}"
    return json.loads(found.group(1))


def small_lesson(folder: Path) -> Path:
    """A notebook with what a lesson has: maths inline and displayed, a literal dollar, code, a figure, a widget
    (a slider over a plot), an exercise, sections."""
    v4 = nbformat.v4
    cells = [
        v4.new_code_cell('import sys\n\nif "google.colab" in sys.modules:\n    pass'),
        v4.new_markdown_cell("# 99 · A page to check\n\nInline $\\hat x_0 = \\sqrt{\\bar\\alpha_t}\\,x_t$, a price of "
                             "\\$5, and `$HOME` in code:\n\n$$\\epsilon_\\theta(x_t, t) = \\frac{x_t - a_t x_0}{s_t}$$"),
        v4.new_code_cell("import matplotlib.pyplot as plt\nimport ipywidgets as widgets\nplt.plot([0, 1], [1, 0])\nplt.show()"),
        v4.new_markdown_cell("## 1. A widget\n\n### Exercise 1: a sum"),
        v4.new_code_cell("def f(a):\n    ### BEGIN SOLUTION\n    return a + 1\n    ### END SOLUTION\n\n\n"
                         "def show(k):\n    plt.plot([0, k], [0, 1])\n    plt.show()\n    return k\n\n\n"
                         "widgets.interactive(show, k=widgets.IntSlider(value=2, min=0, max=5))"),
        v4.new_markdown_cell("## What this lesson measured\n\n- $a_t^2 + s_t^2 = 1$"),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(v4.new_notebook(cells=cells), folder / "99_check.ipynb")
    return folder


def test_typeset_math_turns_the_markdown_cells_formulas_into_mathml_and_leaves_code_alone():
    page = ('<div class="jp-RenderedHTMLCommon jp-MarkdownOutput" data-mime-type="text/markdown">'
            '<p>Inline $a_b &lt; c$, <code>$x$</code>, \\$5 and</p><p>$$\\frac{1}{2}$$</p></div>'
            '<div class="jp-OutputArea-output"><pre>$not maths$</pre></div>')
    out = typeset_math(page)
    assert out.count("<math") == 2 and 'display="block"' in out and "<mfrac>" in out and "<mo>&#x0003C;</mo>" in out
    assert "<code>$x$</code>" in out and "\\$5" in out and "<pre>$not maths$</pre>" in out
    with pytest.raises(ValueError, match="^page has a formula latex2mathml cannot typeset: 'x\\^'"):
        typeset_math(page.replace("a_b &lt; c", "x^"))
    with pytest.raises(ValueError, match="^page must be"):
        typeset_math(b"<p>$x$</p>")


def test_static_widgets_put_what_a_widget_drew_in_its_place_and_drop_the_state():
    view = {"output_type": "display_data", "metadata": {},
            "data": {"text/plain": "interactive(...)", "application/vnd.jupyter.widget-view+json": {"model_id": "box"}}}
    drawn = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBORw0KGgo="}}
    state = {"box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_out"]}},
             "slider": {"model_name": "IntSliderModel", "state": {}},
             "out": {"model_name": "OutputModel", "state": {"outputs": [drawn]}}}
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("w", outputs=[nbformat.from_dict(view)])])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    outputs = static_widgets(nb).cells[0].outputs
    assert "widgets" not in nb.metadata and len(outputs) == 2
    assert "interactive widget" in outputs[0]["data"]["text/html"] and outputs[1]["data"] == drawn["data"]


def test_slides_start_at_sections_and_hide_exercise_answers_in_fragments(tmp_path):
    nb = nbformat.read(small_lesson(tmp_path) / "99_check.ipynb", as_version=4)
    kinds = [c.metadata["slideshow"]["slide_type"] for c in slide_types(nb).cells]
    assert kinds == ["skip", "slide", "-", "slide", "fragment", "slide"]
    with pytest.raises(ValueError, match="^give html or slides"):
        render(tmp_path)
    with pytest.raises(ValueError, match="^only must be a list"):
        render(tmp_path, html=tmp_path / "html", only="99")  # a string would match names by its characters
    with pytest.raises(ValueError, match="^timeout"):
        render(tmp_path, html=tmp_path / "html", timeout=0)
    for call in (slide_types, static_widgets):
        with pytest.raises(ValueError, match="^nb must be a notebook"):
            call({"cells": []})


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    written = render(small_lesson(folder / "solutions"), html=folder / "html", slides=folder / "slides")
    return {p.suffixes[-2] if len(p.suffixes) > 1 else ".html": p for p in written}


def test_pages_load_nothing_from_the_network_and_typeset_at_build_time(pages):
    for page in pages.values():
        text = page.read_text(encoding="utf-8")
        assert not re.findall(r'(?:src|href)="(?:https?:)?//', text), page  # no CDN script, style or font
        assert "mathjax" not in text.lower() and text.count("<math") == 3 and "$$" not in text
    assert (pages[".slides"].parent / "static" / "reveal.js" / "dist" / "reveal.js").is_file()


def test_the_page_reads_offline_in_chromium_with_formulas_typeset_and_every_figure_shown(pages, tmp_path):
    seen = read_offline(pages[".html"])
    # the figure, and the widget's drawing at its default; three formulas, their subscripts set lower
    assert seen["images"] == 2 and seen["images_broken"] == seen["images_without_box"] == 0, seen
    assert seen["math"] == 3 and seen["math_without_box"] == 0 and seen["tex_left"] == 0, seen
    assert seen["subscripts"] > 0 and seen["subscripts_not_lowered"] == 0, seen
    # the check can fail: the same notebook through nbconvert's own exporter leaves TeX for a MathJax it cannot fetch
    import nbconvert

    nb = nbformat.read(pages[".html"].parent.parent / "solutions" / "99_check.ipynb", as_version=4)
    plain = tmp_path / "plain.html"
    plain.write_text(nbconvert.HTMLExporter().from_notebook_node(nb)[0], encoding="utf-8")
    seen = read_offline(plain)
    assert seen["math"] == 0 and seen["tex_left"] >= 2, seen


def test_the_deck_starts_offline_in_chromium(pages):
    seen = read_offline(pages[".slides"])
    # title, "1. A widget" with its exercise sub-slide, "What this lesson measured": reveal.js nests sub-slides
    assert seen["reveal_ready"] and seen["slides"] >= 4 and seen["images_broken"] == 0, seen
    assert seen["math"] == 3 and seen["math_without_box"] == 0, seen


@pytest.mark.slow
def test_a_lesson_renders_as_a_page_and_a_deck_with_its_figures_that_read_offline(tmp_path):
    """Lesson 01 through the command, as an instructor builds it: its 6 figures inline (the timestep features,
    cross-attention on and off, one scene noised at three resolutions, the Bayes accuracy at one schedule and
    shifted), the U-Net explorer's printout at its defaults in the widget's place, every formula
    typeset, the committed notebook unchanged."""
    from coursekit.cli import main

    source = ROOT / "solutions" / "01_the_unet.ipynb"
    before = source.read_text()
    assert main(["lessons", "--solutions", str(ROOT / "solutions"), "--html", str(tmp_path / "html"),
                 "--slides", str(tmp_path / "slides"), "--only", "01"]) == 0
    page, deck = tmp_path / "html" / "01_the_unet.html", tmp_path / "slides" / "01_the_unet.slides.html"
    text = page.read_text()
    first_heading = nbformat.read(source, as_version=4).cells[1].source.splitlines()[0].lstrip("# ")
    assert first_heading.split(" ")[-1] in text and text.count('<img alt="No description') == 6
    assert text.count("an interactive widget: run the notebook") == 1
    assert "Traceback" not in text and "NotImplementedError" not in text
    assert source.read_text() == before  # the committed notebook keeps no outputs
    seen = read_offline(page)
    assert seen["images"] == 6 and seen["images_broken"] == seen["images_without_box"] == 0, seen
    assert seen["math"] > 10 and seen["math_without_box"] == seen["tex_left"] == seen["subscripts_not_lowered"] == 0, seen
    seen = read_offline(deck)
    assert seen["reveal_ready"] and seen["slides"] > 5 and seen["images_broken"] == 0, seen
