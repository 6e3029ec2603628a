"""The lessons as pages a reader opens without a kernel or a network: executed HTML and slide decks.

``coursekit lessons --html DIR`` runs each solution notebook and writes it as one self-contained page;
``coursekit lessons --slides DIR`` writes it as a reveal.js deck. Neither needs the network when read:

- formulas are typeset when the page is built: every ``$...$`` and ``$$...$$`` of the markdown becomes MathML
  (``latex2mathml``), which browsers draw natively, so no MathJax is fetched;
- a widget cannot run without a kernel, so each widget view is replaced by what it drew at its default settings
  when the notebook ran (nbclient records the Output widget's contents), with a line saying it is a widget;
- the pages load no script from a CDN: the HTML needs none, and the decks load reveal.js and require.js from the
  copies shipped in ``coursekit/static`` (both MIT licensed), copied beside the decks.

Slides follow the lesson's structure: each ``##`` section starts a slide and each ``###`` heading a sub-slide (an
exercise among them), the code that answers an exercise sits in a fragment revealed on demand, and every
"What this lesson measured" heading starts a slide of its own.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import nbformat

from ._checks import check_int

STATIC = Path(__file__).parent / "static"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# in nbconvert's HTML of a markdown cell: the cell, the code in it, and its formulas (display, then inline; "\$" is
# a literal dollar)
_MARKDOWN = re.compile(r'(<div class="[^"]*\bjp-MarkdownOutput\b[^"]*"[^>]*>)(.*?)(</div>)', re.S)
_CODE = re.compile(r"(<code\b.*?</code>|<pre\b.*?</pre>)", re.S)
_MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$(?!\$)(.+?)(?<!\\)\$", re.S)
# nbconvert's templates with every script that would come from a CDN left out (the pages need none of them)
_TEMPLATES = {"page.j2": """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
""", "deck.j2": """{%- extends 'reveal/index.html.j2' -%}
{%- block html_head_js_jquery -%}{%- endblock html_head_js_jquery -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block footer_js %}
<script>
require({waitSeconds: 15},
  ["{{ resources.reveal.url_prefix }}/dist/reveal.js", "{{ resources.reveal.url_prefix }}/plugin/notes/notes.js"],
  function (Reveal, RevealNotes) {
    Reveal.initialize({controls: true, progress: true, history: true, transition: "{{ resources.reveal.transition }}",
                       slideNumber: "{{ resources.reveal.number }}", plugins: [RevealNotes],
                       width: {{ resources.reveal.width or 960 }}, height: {{ resources.reveal.height or 700 }}});
    // a slide taller than the screen scrolls instead of being shrunk
    var scrolling = function () {
      document.querySelectorAll(".reveal section.present section, .reveal section.present").forEach(function (s) {
        if (s.scrollHeight > window.innerHeight * 0.95) {
          s.style.height = "95vh"; s.style.overflowY = "auto"; s.style.top = "0";
        }
      });
    };
    Reveal.on("ready", scrolling);
    Reveal.on("slidechanged", scrolling);
  });
</script>
{% endblock footer_js %}
"""}


def _needs(what: str):
    try:
        if what == "nbconvert":
            import nbclient  # noqa: F401
            import nbconvert
            return nbconvert
        import latex2mathml.converter
        return latex2mathml.converter
    except ImportError as error:
        raise RuntimeError(f"rendering lessons needs nbclient, nbconvert and latex2mathml ({error}): "
                           "python -m pip install -e \".[lab]\"") from error


def typeset_math(page: str) -> str:
    """An nbconvert page with each formula of its markdown cells, ``$$...$$`` (a block) or ``$...$`` (inline), which
    nbconvert leaves as TeX for MathJax, replaced by its MathML; code spans and code blocks are left as they are. A
    formula latex2mathml cannot read raises ValueError naming it."""
    if not isinstance(page, str):
        raise ValueError(f"page must be a str of HTML, got {type(page).__name__}")
    convert = _needs("latex2mathml").convert

    def formula(match: re.Match) -> str:
        block = match.group(1) is not None
        tex = html.unescape(match.group(1) if block else match.group(2)).strip()
        try:
            return convert(tex, display="block" if block else "inline")
        except Exception as error:  # latex2mathml raises its own exception types
            raise ValueError(f"page has a formula latex2mathml cannot typeset: {tex!r} ({error})") from error

    def cell(match: re.Match) -> str:
        parts = _CODE.split(match.group(2))  # odd parts: code, kept
        return match.group(1) + "".join(p if k % 2 else _MATH.sub(formula, p) for k, p in enumerate(parts)) + match.group(3)

    return _MARKDOWN.sub(cell, page)


def _drawn(state: dict, model_id: str) -> list:
    """The outputs a widget's Output widgets hold (what it drew), found by walking its children."""
    model = state.get(model_id, {})
    if model.get("model_name") == "OutputModel":
        return list(model.get("state", {}).get("outputs", []))
    found = []
    for child in model.get("state", {}).get("children", []):
        found += _drawn(state, child.removeprefix("IPY_MODEL_"))
    return found


def static_widgets(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Replace each widget view in the executed ``nb`` (in place) by a line naming it a widget and what it drew at
    its default settings, and drop the widget state (which a page would need a CDN's script to read)."""
    _check_notebook(nb)
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(output)
                continue
            note = "(an interactive widget: run the notebook to use it; below, what it drew at its default settings)"
            outputs.append(nbformat.v4.new_output("display_data", data={"text/html": f"<p><em>{note}</em></p>"}))
            outputs += [nbformat.from_dict(o) for o in _drawn(state, view["model_id"])]
        cell.outputs = outputs
    return nb


def _check_notebook(nb) -> None:
    if not isinstance(nb, nbformat.NotebookNode) or "cells" not in nb:
        raise ValueError(f"nb must be a notebook (nbformat.NotebookNode), got {type(nb).__name__}")


def _loader():
    import jinja2

    return jinja2.DictLoader(_TEMPLATES)


def _select(solutions: Path, only: list[str] | None) -> list[Path]:
    if only is not None and (isinstance(only, str) or not all(isinstance(o, str) for o in only)):
        raise ValueError(f"only must be a list of lesson numbers as strings (e.g. ['03']), got {only!r}")
    solutions = Path(solutions)
    if not solutions.is_dir():
        raise ValueError(f"solutions must be a directory of notebooks, got {solutions}")
    paths = sorted(p for p in solutions.glob("*.ipynb") if not only or any(p.name.startswith(o) for o in only))
    if not paths:
        raise ValueError(f"only must name notebooks in {solutions}/ (by their leading number), got {only}")
    return paths


def _executed(path: Path, timeout: int) -> nbformat.NotebookNode:
    """The notebook run from a fresh kernel in its own folder (as the tests run it), made readable offline."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent.resolve())}}).execute()
    return static_widgets(nb)


def slide_types(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Mark each cell of ``nb`` (in place) for reveal.js: the title and every ``##`` section a slide, every ``###``
    heading a sub-slide, an exercise's answer (a cell holding a solution region) a fragment shown on demand, the
    Colab install cell skipped; every other cell continues the slide before it."""
    _check_notebook(nb)
    from .notebooks import BEGIN

    for k, cell in enumerate(nb.cells):
        text = cell.source.lstrip()
        if cell.cell_type == "code" and "google.colab" in text:
            kind = "skip"
        elif cell.cell_type == "markdown" and (text.startswith("# ") or text.startswith("## ")):
            kind = "slide"
        elif cell.cell_type == "markdown" and text.startswith("### "):
            kind = "subslide"
        elif cell.cell_type == "code" and BEGIN in cell.source:
            kind = "fragment"
        else:
            kind = "-"
        cell.metadata["slideshow"] = {"slide_type": kind}
    return nb


def render(solutions: Path, *, html: Path | None = None, slides: Path | None = None, only: list[str] | None = None,
           timeout: int = 600) -> list[Path]:
    """Run each solution notebook once, from a fresh kernel, and write it as a page ``html/X.html`` (one
    self-contained file) and/or a reveal.js deck ``slides/X.slides.html`` (``slide_types``; reveal.js and require.js
    copied into ``slides/static``), both readable offline (see the module's docstring). ``only``: the notebooks whose
    names start with one of these (e.g. "03"). The notebooks themselves are not changed. Returns the files written."""
    nbconvert = _needs("nbconvert")
    _needs("latex2mathml")
    check_int("timeout", timeout, 1)
    if html is None and slides is None:
        raise ValueError("give html or slides (or both): the folders to write the pages and the decks to")
    paths = _select(solutions, only)
    exporters = {}
    if html is not None:
        exporters[Path(html), ".html"] = nbconvert.HTMLExporter(embed_images=True, extra_loaders=[_loader()],
                                                                template_file="page.j2")
    if slides is not None:
        Path(slides).mkdir(parents=True, exist_ok=True)
        shutil.copytree(STATIC, Path(slides) / "static", dirs_exist_ok=True)
        exporters[Path(slides), ".slides.html"] = nbconvert.SlidesExporter(
            embed_images=True, extra_loaders=[_loader()], template_file="deck.j2", reveal_url_prefix="static/reveal.js",
            reveal_theme="white", require_js_url="static/require.js", exclude_input_prompt=True,
            exclude_output_prompt=True)
    written = []
    for path in paths:
        nb = slide_types(_executed(path, timeout))
        for (folder, suffix), exporter in exporters.items():
            folder.mkdir(parents=True, exist_ok=True)
            page, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
            written.append(folder / f"{path.stem}{suffix}")
            written[-1].write_text(typeset_math(page), encoding="utf-8")
    return written
