"""Render a stored trace as a tree: what ``appsdk traces show`` prints.

Everything shown comes from stored spans, and spans quote user input (a span name, an
exception message, an attribute). Before it reaches the terminal every such text goes
through :func:`printable`: control characters would otherwise retitle the window
(``ESC ]0;...BEL``), clear the screen (``ESC [2J``), or plant a hyperlink (OSC 8). The
texts are rich ``Text`` objects, never markup strings, so ``[bold]`` or ``[link=...]`` in the
data is printed as written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from rich.tree import Tree

from appsdk import semconv
from appsdk.store.db import ScoreRecord, SpanRecord

__all__ = [
    "DEFAULT_DEPTH",
    "MAX_DEPTH",
    "TraceFacts",
    "decoded",
    "printable",
    "trace_facts",
    "trace_tree",
    "tree_width",
]

# C0 (newline and tab included: a label is one line), DEL and C1 (0x9b is a one-byte CSI),
# plus the bidirectional overrides and line separators that reorder or break what is shown.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(value: object) -> str:
    """``value`` as one line of plain text a terminal shows as is: control characters become
    visible escapes (``\\x1b``, ``\\n``).

    Example:
        >>> printable("evil\\x1b]0;pwned\\x07 name")
        'evil\\\\x1b]0;pwned\\\\x07 name'
    """
    return _UNPRINTABLE.sub(_escape, value if isinstance(value, str) else str(value))


def decoded(value: Any) -> Any:
    """A JSON-encoded attribute value decoded, or the value itself if it is not JSON."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@dataclass(frozen=True, slots=True)
class TraceFacts:
    """What the spans of a trace say of the whole trace: the trace name and what people filter
    by (user, session, tags). A value set on several spans counts once; values that differ
    (two users in one trace) are all kept, in the order their spans started."""

    name: str | None = None
    user_ids: tuple[str, ...] = ()
    session_ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


_FACT_KEYS = (semconv.LF_TRACE_NAME, semconv.USER_ID, semconv.SESSION_ID, semconv.LF_TRACE_TAGS)


def trace_facts(spans: list[SpanRecord]) -> TraceFacts:
    """The :class:`TraceFacts` of the trace made of ``spans``.

    Example:
        >>> trace_facts([]).user_ids
        ()
    """
    found: dict[str, dict[str, None]] = {key: {} for key in _FACT_KEYS}
    for span in sorted(spans, key=lambda s: s.start_ns):
        for key in _FACT_KEYS:
            value = span.attributes.get(key)
            values = decoded(value) if key == semconv.LF_TRACE_TAGS else value
            for text in values if isinstance(values, list) else [values]:
                if text is not None and text != "":
                    found[key][str(text)] = None
    names = tuple(found[semconv.LF_TRACE_NAME])
    return TraceFacts(
        name=names[0] if names else None,
        user_ids=tuple(found[semconv.USER_ID]),
        session_ids=tuple(found[semconv.SESSION_ID]),
        tags=tuple(found[semconv.LF_TRACE_TAGS]),
    )


def _header(trace_id: str, facts: TraceFacts) -> Text:
    """``trace <id>  name ...  user ...  session ...  tags ...``: the tree's first line."""
    text = Text(f"trace {printable(trace_id)}", style="bold magenta")
    for label, values in (
        ("name", (facts.name,) if facts.name else ()),
        ("user", facts.user_ids),
        ("session", facts.session_ids),
        ("tags", facts.tags),
    ):
        if values:
            text.append(f"  {label} ", style="dim")
            text.append(", ".join(printable(value) for value in values), style="bold")
    return text


def _observation_type(span: SpanRecord) -> str:
    kind = span.attributes.get(semconv.LF_TYPE)
    if isinstance(kind, str):
        return kind
    return span.kind.lower() if span.kind != "INTERNAL" else "span"


def _tokens(attrs: dict[str, Any]) -> str | None:
    usage = decoded(attrs.get(semconv.LF_USAGE))
    if isinstance(usage, dict) and usage:
        return f"tokens {usage.get('input', '?')} in / {usage.get('output', '?')} out"
    inp = attrs.get(semconv.GEN_AI_INPUT_TOKENS, attrs.get("gen_ai.usage.prompt_tokens"))
    out = attrs.get(semconv.GEN_AI_OUTPUT_TOKENS, attrs.get("gen_ai.usage.completion_tokens"))
    if inp is not None or out is not None:
        return (
            f"tokens {inp if inp is not None else '?'} in / {out if out is not None else '?'} out"
        )
    return None


def _cost(attrs: dict[str, Any]) -> str | None:
    cost = decoded(attrs.get(semconv.LF_COST))
    total = cost.get("total") if isinstance(cost, dict) else attrs.get(semconv.GEN_AI_USAGE_COST)
    return f"cost {total:.6f}" if isinstance(total, int | float) else None


def _ttft(span: SpanRecord) -> str | None:
    start = span.attributes.get(semconv.LF_COMPLETION_START)
    if isinstance(start, str):
        from datetime import datetime

        try:
            first = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() * 1e9
        except ValueError:
            return None
        return f"ttft {(first - span.start_ns) / 1e6:.1f}ms"
    ttft = span.attributes.get("gen_ai.latency.time_to_first_token")
    return f"ttft {float(ttft) * 1000:.1f}ms" if isinstance(ttft, int | float) else None


def _label(span: SpanRecord) -> Text:
    attrs = span.attributes
    obs_type = _observation_type(span)
    text = Text()
    text.append(printable(span.name), style="bold")
    text.append(f" [{printable(obs_type)}]", style="cyan")
    text.append(f" {span.duration_ms:.1f}ms", style="dim")
    model = (
        attrs.get(semconv.LF_MODEL)
        or attrs.get(semconv.GEN_AI_RESPONSE_MODEL)
        or attrs.get(semconv.GEN_AI_REQUEST_MODEL)
    )
    details = [
        f"model {model}" if model else None,
        _tokens(attrs),
        _ttft(span)
        if obs_type in semconv.GENERATION_LIKE_TYPES
        or "gen_ai.latency.time_to_first_token" in attrs
        else None,
        _cost(attrs),
    ]
    prompt = attrs.get(semconv.LF_PROMPT_NAME)
    if prompt:
        details.append(f"prompt {prompt} v{attrs.get(semconv.LF_PROMPT_VERSION)}")
    for detail in details:
        if detail:
            text.append(f"  {printable(detail)}")
    level = attrs.get(semconv.LF_LEVEL) or ("ERROR" if span.status_code == "ERROR" else None)
    if level and level != "DEFAULT":
        text.append(f"  {printable(level)}", style="bold red" if level == "ERROR" else "yellow")
        message = attrs.get(semconv.LF_STATUS_MESSAGE) or span.status_message
        if message:
            text.append(f": {printable(message)}", style="red" if level == "ERROR" else "yellow")
    if span.service_name and span.scope not in (semconv.TRACER_NAME, "langfuse-sdk"):
        text.append(f"  ({printable(span.service_name)})", style="dim")
    return text


# Each level of a rich Tree indents its labels by 4 cells, and a label with no room left is
# not drawn at all: 38 levels fill a 160-column console, and deeper ones would vanish without
# a word. So the tree is cut at a depth (by default one that fits 160 columns), with a marker
# saying what is below; the CLI widens its console to fit the levels it shows (tree_width).
GUIDE_CELLS = 4
DEFAULT_DEPTH = 18
# What --depth can ask for: the output grows with the square of the depth (1,000 levels are
# about 2 MB of guides); beyond this it is no longer something to read.
MAX_DEPTH = 1000
_LABEL_CELLS = 84  # 4 * (DEFAULT_DEPTH + 1) + 84 = 160: a cut marker fits whole


@dataclass(frozen=True, slots=True)
class _Forest:
    """The spans of a trace as a forest: children in start order, and per span the number of
    levels and spans below it. Built without recursion: a trace may be thousands deep."""

    roots: list[SpanRecord]
    children: dict[str, list[SpanRecord]]
    levels_below: dict[str, int]
    spans_below: dict[str, int]


def _forest(spans: list[SpanRecord]) -> _Forest:
    by_id = {span.span_id: span for span in spans}
    children: dict[str, list[SpanRecord]] = {}
    roots: list[SpanRecord] = []
    for span in sorted(by_id.values(), key=lambda s: s.start_ns):
        parent = span.parent_span_id
        if parent in by_id and parent != span.span_id:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    order = _depth_first(roots, children)
    if len(order) < len(by_id):
        # A damaged store can hold a loop of parent links (a -> b -> a), which no root
        # reaches: its earliest span is shown as a root, so every span is printed once.
        seen = {span.span_id for span in order}
        for span in sorted(by_id.values(), key=lambda s: s.start_ns):
            if span.span_id not in seen:
                roots.append(span)
                added = _depth_first([span], children, seen)
                order.extend(added)
                seen.update(s.span_id for s in added)
        roots.sort(key=lambda s: s.start_ns)
    levels: dict[str, int] = {}
    counts: dict[str, int] = {}
    for span in reversed(order):  # children before their parent
        below = [c for c in children.get(span.span_id, []) if c.span_id in levels]
        levels[span.span_id] = max((levels[c.span_id] + 1 for c in below), default=0)
        counts[span.span_id] = sum(counts[c.span_id] + 1 for c in below)
    return _Forest(roots, children, levels, counts)


def _depth_first(
    roots: list[SpanRecord],
    children: dict[str, list[SpanRecord]],
    seen: set[str] | None = None,
) -> list[SpanRecord]:
    """Spans reachable from ``roots``, each once, parents first."""
    visited = set(seen or ())
    order: list[SpanRecord] = []
    stack = list(reversed(roots))
    while stack:
        span = stack.pop()
        if span.span_id in visited:
            continue
        visited.add(span.span_id)
        order.append(span)
        stack.extend(reversed(children.get(span.span_id, [])))
    return order


def _cut_marker(levels: int, spans: int, depth: int) -> Text:
    """``… 130 deeper levels (130 spans) not shown; --depth 150 shows them``: short enough
    for the room left at the default depth (see _LABEL_CELLS)."""
    if depth + levels <= MAX_DEPTH:
        hint = f"--depth {depth + levels} shows them"
    elif depth < MAX_DEPTH:
        hint = f"--depth {MAX_DEPTH} shows {MAX_DEPTH - depth} (the maximum)"
    else:
        hint = f"at most {MAX_DEPTH} levels can be shown"
    return Text(
        f"… {levels} deeper level{'s' if levels != 1 else ''} "
        f"({spans} span{'s' if spans != 1 else ''}) not shown; {hint}",
        style="yellow",
    )


def trace_tree(
    trace_id: str,
    spans: list[SpanRecord],
    scores: list[ScoreRecord],
    *,
    max_depth: int = DEFAULT_DEPTH,
) -> Tree:
    """A rich Tree of one trace: a header with its name, user, session and tags, spans nested
    by parent, scores at the end.

    Args:
        max_depth: levels of spans shown (at most :data:`MAX_DEPTH`); where a span has
            children below it, a marker says how many levels and spans are not shown.
    """
    depth = max(1, min(max_depth, MAX_DEPTH))
    forest = _forest(spans)
    root = Tree(_header(trace_id, trace_facts(spans)))
    shown: set[str] = set()
    stack: list[tuple[Tree, SpanRecord, int]] = [(root, s, 1) for s in reversed(forest.roots)]
    while stack:
        parent, span, level = stack.pop()
        if span.span_id in shown:  # a span reached twice (a loop of parents) is shown once
            continue
        shown.add(span.span_id)
        node = parent.add(_label(span))
        below = [c for c in forest.children.get(span.span_id, []) if c.span_id not in shown]
        if below and level >= depth:
            levels = forest.levels_below[span.span_id]
            node.add(_cut_marker(levels, forest.spans_below[span.span_id], depth))
            continue
        stack.extend((node, child, level + 1) for child in reversed(below))
    for score in scores:
        target = f" on {score.observation_id}" if score.observation_id else ""
        comment = f'  "{score.comment}"' if score.comment else ""
        line = f"score {score.name} = {score.value} ({score.data_type}){target}{comment}"
        root.add(Text(printable(line), style="green"))
    return root


def tree_width(tree: Tree, *, minimum: int = 160) -> int:
    """Console columns that leave every label of ``tree`` room to be drawn."""
    deepest = 0
    stack = [(tree, 0)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in node.children)
    return max(minimum, GUIDE_CELLS * deepest + _LABEL_CELLS)
