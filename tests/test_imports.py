"""The import rules of ARCHITECTURE.md: every module imports only from lower layers (or within its own
package), and the import graph, imports inside functions included, has no circle."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "coursekit"


def layers() -> dict[str, int]:
    """Top-level part of coursekit -> its layer, read from ARCHITECTURE.md's table."""
    table = {}
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        m = re.match(r"^layer (\d+)\s+(.+)$", line)
        if m:
            table.update({name: int(m.group(1)) for name in m.group(2).split()})
    return table


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The coursekit modules ``path`` imports, anywhere in it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("coursekit"):
                continue
            for alias in node.names:  # ``from . import x`` may name a module
                sub = f"{target}.{alias.name}"
                found.add(sub if module_path(sub) else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("coursekit")}
    return found


def module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def part(module: str) -> str:
    """The top-level part a module belongs to: coursekit.diffusion.ddim -> diffusion."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "coursekit"


def test_every_module_has_a_layer():
    table = layers()
    assert table, "ARCHITECTURE.md lost its layer table"
    missing = sorted({part(m) for m in graph()} - set(table) - {"coursekit"})
    assert not missing, f"modules without a layer in ARCHITECTURE.md: {missing}"


def upward_imports(g: dict[str, set[str]], table: dict[str, int]) -> list[str]:
    """Each import of ``g`` from the same or a higher layer of another part."""
    return [f"{m} (layer {table[part(m)]}) imports {d} (layer {table[part(d)]})"
            for m, deps in g.items() for d in sorted(deps)
            if part(d) != part(m) and table[part(d)] >= table[part(m)]]


def test_modules_import_only_from_lower_layers():
    table = {**layers(), "coursekit": 0}  # the package root holds only __version__
    wrong = upward_imports(graph(), table)
    assert not wrong, "imports against ARCHITECTURE.md:\n" + "\n".join(wrong)


def cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(g):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_circle():
    assert cycle(graph()) is None, " -> ".join(cycle(graph()))


@pytest.mark.parametrize("g, circle", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
])
def test_the_circle_finder_finds_circles(g, circle):
    assert cycle(g) == circle


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """A layer-1 module importing the zoo (layer 4) inside a function is caught."""
    fake = tmp_path / "coursekit" / "diffusion"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def f():\n    from ..zoo import load\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert imports(fake / "bad.py") == {"coursekit.zoo"}


def test_the_layer_rule_reports_upward_and_same_layer_imports(tmp_path, monkeypatch):
    """The rule's negative control, on a small synthetic package: a layer-1 module importing the zoo (layer 4) and
    one importing viz (layer 1, another part) are reported; imports downwards and within a part are not."""
    table = {**layers(), "coursekit": 0}
    package = tmp_path / "coursekit"
    (package / "diffusion").mkdir(parents=True)
    for path, text in {"__init__.py": "", "zoo.py": "from .diffusion import ddim\n", "viz.py": "",
                       "diffusion/__init__.py": "from . import ddim\n", "diffusion/ddim.py": "",
                       "diffusion/up.py": "def f():\n    from ..zoo import load\n",
                       "diffusion/side.py": "import coursekit.viz\n"}.items():
        (package / path).write_text(text)
    module = __import__(__name__)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "PACKAGE", package)
    assert upward_imports(graph(), table) == ["coursekit.diffusion.side (layer 1) imports coursekit.viz (layer 1)",
                                              "coursekit.diffusion.up (layer 1) imports coursekit.zoo (layer 4)"]
