"""The layers docs/architecture.md draws are the imports the code makes.

Every module of appsdk sits in one layer of that drawing; no module-level import reaches a
layer above its own; the imports have no circle; every module's first line states its job.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "appsdk"
_LABEL = 19  # the width of the layer names' column in the drawing


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


@functools.cache
def _layers() -> list[tuple[str, list[str]]]:
    """The drawing under '## The layers': (layer, the names it lists), top layer first."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## The layers", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    block = re.sub(r"\([^)]*\)", "", block, flags=re.DOTALL)  # the explanations
    layers: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line[:_LABEL].strip():
            layers.append((line[:_LABEL].strip(), []))
        layers[-1][1].extend(re.findall(r"[a-z_]+(?:\.[a-z_]+)*/?", line[_LABEL:]))
    return layers


@functools.cache
def _layer_of() -> dict[str, int]:
    """Each module's layer, 0 at the top: a listed module, else its package (``name/``)."""
    listed = {name: index for index, (_, names) in enumerate(_layers()) for name in names}
    placed = {}
    for module in MODULES:
        if module in ("appsdk", "appsdk._version"):
            continue
        short = module.removeprefix("appsdk.")
        if short in listed:
            placed[module] = listed[short]
        elif f"{short.split('.')[0]}/" in listed:
            placed[module] = listed[f"{short.split('.')[0]}/"]
    return placed


@functools.cache
def _imports(module: str) -> frozenset[str]:
    """The appsdk modules ``module`` imports when it loads (not under TYPE_CHECKING, not in a
    function). ``from appsdk.x import y`` is module ``appsdk.x.y`` when that is a module."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in MODULES else node.module)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(MODULES[module].read_text()).body)
    # The package's own __init__ loads nothing eagerly but its version (see appsdk/__init__.py).
    return frozenset(name for name in found if name in MODULES and name not in ("appsdk", module))


def test_every_module_sits_in_one_layer_of_the_drawing() -> None:
    placed = _layer_of()
    unplaced = sorted(set(MODULES) - set(placed) - {"appsdk", "appsdk._version"})
    assert not unplaced, f"add these to docs/architecture.md's layers: {unplaced}"


@pytest.mark.parametrize("module", sorted(_layer_of()))
def test_no_import_reaches_a_layer_above(module: str) -> None:
    layer_of, names = _layer_of(), [name for name, _ in _layers()]
    above = {
        dep: names[layer_of[dep]]
        for dep in _imports(module)
        if dep in layer_of and layer_of[dep] < layer_of[module]
    }
    assert not above, f"{module} ({names[layer_of[module]]}) imports from above: {above}"


def test_the_imports_have_no_circle() -> None:
    graph = {module: _imports(module) for module in MODULES}
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError(" -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for dep in sorted(graph[module]):
            walk(dep, [*path, module])
        done.add(module)

    for module in sorted(graph):
        walk(module, [])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_first_line_of_every_module_states_its_job(module: str) -> None:
    doc = ast.get_docstring(ast.parse(MODULES[module].read_text()))
    assert doc and doc.splitlines()[0].strip(), f"{module} has no docstring"
