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
from typing import Any

from rich.text import Text
from rich.tree import Tree

from appsdk import semconv
from appsdk.store.db import ScoreRecord, SpanRecord

__all__ = ["decoded", "printable", "trace_tree"]

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


def trace_tree(trace_id: str, spans: list[SpanRecord], scores: list[ScoreRecord]) -> Tree:
    """A rich Tree of one trace: spans nested by parent, scores at the end."""
    root = Tree(Text(f"trace {printable(trace_id)}", style="bold magenta"))
    by_id = {span.span_id: span for span in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in by_id else None
        children.setdefault(parent, []).append(span)

    def add(node: Tree, parent_id: str | None) -> None:
        for span in sorted(children.get(parent_id, []), key=lambda s: s.start_ns):
            add(node.add(_label(span)), span.span_id)

    add(root, None)
    for score in scores:
        target = f" on {score.observation_id}" if score.observation_id else ""
        comment = f'  "{score.comment}"' if score.comment else ""
        line = f"score {score.name} = {score.value} ({score.data_type}){target}{comment}"
        root.add(Text(printable(line), style="green"))
    return root
