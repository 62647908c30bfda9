"""``appsdk traces show`` renders any trace: deep ones without recursion, and every level is
either drawn or counted in a visible marker, never silently cut."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from rich.console import Console
from rich.tree import Tree
from typer.testing import CliRunner

from appsdk import render
from appsdk.cli import app as cli
from appsdk.render import DEFAULT_DEPTH, MAX_DEPTH, trace_tree, tree_width
from appsdk.store.db import SpanRecord, TraceStore

DEEP = "d" * 32
MEDIUM = "e" * 32
LEVEL = re.compile(r"level-(\d+) \[span\]")
MARKER = re.compile(
    r"… (\d+) deeper levels? \((\d+) spans?\) not shown; "
    r"(?:--depth (\d+) shows them|--depth (\d+) shows (\d+) \(the maximum\)"
    r"|at most (\d+) levels can be shown)"
)


def _span(trace_id: str, number: int, parent: int | None, name: str | None = None) -> SpanRecord:
    return SpanRecord(
        span_id=f"{trace_id[0]}{number:015x}",
        trace_id=trace_id,
        parent_span_id=f"{trace_id[0]}{parent:015x}" if parent is not None else None,
        name=name or f"level-{number}",
        kind="INTERNAL",
        start_ns=1_000 + number,
        end_ns=2_000_000_000,
        status_code="OK",
        status_message=None,
        scope=None,
        service_name=None,
    )


def _chain(trace_id: str, levels: int) -> list[SpanRecord]:
    """One span per level: level-1 is the root, level-N the deepest."""
    return [_span(trace_id, n, n - 1 if n > 1 else None) for n in range(1, levels + 1)]


@pytest.fixture
def deep_store(tmp_path: Path) -> Path:
    path = tmp_path / "traces.db"
    store = TraceStore(path)
    store.write_spans(_chain(DEEP, 1200) + _chain(MEDIUM, 150))
    store.close()
    return path


def _show(store: Path, trace_id: str, *options: str) -> str:
    result = CliRunner().invoke(cli, ["traces", "show", trace_id, "--db", str(store), *options])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    return result.output


def _assert_every_level_accounted_for(output: str, total: int) -> tuple[int, int]:
    """Levels 1..shown are drawn in full, and a marker counts exactly the rest."""
    shown = sorted(int(n) for n in LEVEL.findall(output))
    assert shown == list(range(1, len(shown) + 1)), "a level is missing in the middle"
    markers = MARKER.findall(output)
    if len(shown) == total:
        assert not markers
        return len(shown), 0
    assert len(markers) == 1, output[-500:]
    levels, spans = int(markers[0][0]), int(markers[0][1])
    assert len(shown) + levels == total and spans == levels
    return len(shown), levels


@pytest.mark.parametrize(("trace_id", "total"), [(DEEP, 1200), (MEDIUM, 150)])
def test_a_deep_trace_is_cut_at_the_default_depth_with_a_marker(
    deep_store: Path, trace_id: str, total: int
) -> None:
    output = _show(deep_store, trace_id)
    shown, hidden = _assert_every_level_accounted_for(output, total)
    assert shown == DEFAULT_DEPTH and hidden == total - DEFAULT_DEPTH
    if total <= MAX_DEPTH:
        assert f"--depth {total} shows them" in output
    else:
        assert f"--depth {MAX_DEPTH} shows {MAX_DEPTH - DEFAULT_DEPTH} (the maximum)" in output
    # The default output still fits the 160 columns it always had.
    assert max(len(line) for line in output.splitlines()) <= 160


def test_depth_shows_a_150_level_trace_in_full(deep_store: Path) -> None:
    output = _show(deep_store, MEDIUM, "--depth", "150")
    assert _assert_every_level_accounted_for(output, 150) == (150, 0)
    assert "level-150 [span] 2000.0ms" in output  # the deepest label drawn whole


@pytest.mark.parametrize("depth", ["1200", "5000", str(10**30)])
def test_a_1200_level_trace_is_shown_up_to_the_cap_and_the_rest_is_counted(
    deep_store: Path, depth: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lower cap: the same code path, without drawing a thousand levels (rich's cost grows
    # with the square of the depth). The real cap is drawn by the 20,000-level test below.
    monkeypatch.setattr(render, "MAX_DEPTH", 100)
    output = _show(deep_store, DEEP, "--depth", depth)
    assert _assert_every_level_accounted_for(output, 1200) == (100, 1100)
    assert "at most 100 levels can be shown" in output


def test_depth_must_be_positive(deep_store: Path) -> None:
    result = CliRunner().invoke(
        cli, ["traces", "show", DEEP, "--db", str(deep_store), "--depth", "0"]
    )
    assert result.exit_code == 2 and "--depth" in result.output


def test_only_the_deep_branch_is_cut_and_its_siblings_are_shown() -> None:
    trace = "f" * 32
    spans = [
        _span(trace, 1, None, "root"),
        _span(trace, 2, 1, "shallow"),
        _span(trace, 3, 1, "deep-start"),
        _span(trace, 4, 3, "deep-2"),
        _span(trace, 5, 4, "deep-3"),
        _span(trace, 6, 5, "deep-4"),
        _span(trace, 7, 4, "deep-3b"),
        _span(trace, 8, 1, "last"),
    ]
    text = _render(trace_tree(trace, spans, [], max_depth=3))
    for name in ("root", "shallow", "deep-start", "deep-2", "last"):
        assert name in text
    assert "deep-3" not in text and "deep-4" not in text
    # Under deep-2: two levels (deep-3, deep-4) of three spans (deep-3, deep-4, deep-3b).
    assert "… 2 deeper levels (3 spans) not shown; --depth 5 shows them" in text
    assert text.index("deep-2") < text.index("… 2 deeper") < text.index("last")


def test_a_loop_of_parent_links_shows_every_span_once() -> None:
    trace = "a" * 32
    spans = [
        _span(trace, 1, 2, "first-in-loop"),
        _span(trace, 2, 1, "second-in-loop"),
        _span(trace, 3, 3, "own-parent"),
        _span(trace, 4, None, "ordinary-root"),
    ]
    text = _render(trace_tree(trace, spans, []))
    for name in ("first-in-loop", "second-in-loop", "own-parent", "ordinary-root"):
        assert text.count(name) == 1, text


def test_a_20000_level_trace_is_built_without_recursion() -> None:
    trace = "c" * 32
    tree = trace_tree(trace, _chain(trace, 20_000), [], max_depth=10**9)
    text = _render(tree)
    assert "level-1000 [span]" in text and "level-1001 [span]" not in text
    assert "… 19000 deeper levels (19000 spans) not shown" in text


def test_tree_width_leaves_room_for_the_deepest_label() -> None:
    trace = "b" * 32
    tree = trace_tree(trace, _chain(trace, 300), [], max_depth=300)
    assert tree_width(tree) >= 4 * 300 + 80
    assert tree_width(trace_tree(trace, _chain(trace, 3), [])) == 160


def _render(tree: Tree) -> str:
    console = Console(width=tree_width(tree))
    with console.capture() as captured:
        console.print(tree)
    return captured.get()


def _with(span: SpanRecord, **attributes: object) -> SpanRecord:
    return dataclasses.replace(span, attributes=attributes)


def test_the_header_names_the_trace_its_users_sessions_and_tags() -> None:
    """Values set on many spans are shown once; different ones all, in the order their spans
    started; tags as stored (a list) or JSON-encoded (as another SDK may write them)."""
    trace = "f" * 32
    spans = [
        _with(_span(trace, 1, None, "root"), **{"user.id": "ana", "langfuse.trace.tags": ["a"]}),
        _with(
            _span(trace, 2, 1, "child"),
            **{
                "user.id": "ana",
                "session.id": "s-1",
                "langfuse.trace.name": "checkout",
                "langfuse.trace.tags": '["b", "a"]',
            },
        ),
        _with(_span(trace, 3, 1, "other"), **{"user.id": "bob", "langfuse.trace.tags": "c"}),
    ]
    facts = render.trace_facts(spans)
    assert facts == render.TraceFacts("checkout", ("ana", "bob"), ("s-1",), ("a", "b", "c"))
    header = _render(trace_tree(trace, spans, [])).splitlines()[0]
    assert header == f"trace {trace}  name checkout  user ana, bob  session s-1  tags a, b, c"
    assert _render(trace_tree(trace, _chain(trace, 2), [])).splitlines()[0] == f"trace {trace}"
