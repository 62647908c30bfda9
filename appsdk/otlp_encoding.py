"""OTLP protobuf bytes of a batch of spans, written directly.

The bytes are an ``ExportTraceServiceRequest`` that decodes to the same message as
``opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans(spans)`` (a test holds
the two equal on generated spans). That encoder builds a protobuf object per span, attribute
and value in Python, and hashes each span's resource through ``json.dumps``: on the export
thread of a busy process it cost about three times this, time the application's threads wait
for the interpreter lock. Field numbers are those of opentelemetry-proto's ``trace.proto``,
``common.proto`` and ``resource.proto``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind

__all__ = ["encode_request"]

_log = logging.getLogger("appsdk")

_SMALL = [bytes((n,)) for n in range(128)]
_DOUBLE = struct.Struct("<d")
_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# Tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
_T1_LEN, _T2_LEN, _T3_LEN = b"\x0a", b"\x12", b"\x1a"
_T4_LEN, _T5_LEN = b"\x22", b"\x2a"
_ANY_BOOL, _ANY_INT, _ANY_DOUBLE = b"\x10", b"\x18", b"\x21"
_ANY_ARRAY, _ANY_KVLIST, _ANY_BYTES = b"\x2a", b"\x32", b"\x3a"
_SPAN_KIND, _SPAN_START, _SPAN_END = b"\x30", b"\x39", b"\x41"
_SPAN_ATTRIBUTES, _SPAN_DROPPED_ATTRIBUTES = b"\x4a", b"\x50"
_SPAN_EVENTS, _SPAN_DROPPED_EVENTS = b"\x5a", b"\x60"
_SPAN_LINKS, _SPAN_DROPPED_LINKS = b"\x6a", b"\x70"
_SPAN_STATUS, _SPAN_FLAGS = b"\x7a", b"\x85\x01"
_EVENT_TIME, _EVENT_DROPPED = b"\x09", b"\x20"
_LINK_DROPPED, _LINK_FLAGS = b"\x28", b"\x35"
_STATUS_CODE = b"\x18"
_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
# SpanFlags: whether the parent is remote is known (0x100), and whether it is (0x200).
_FLAGS_LOCAL = _SPAN_FLAGS + _FIXED32.pack(0x100)
_FLAGS_REMOTE = _SPAN_FLAGS + _FIXED32.pack(0x300)
_LINK_FLAGS_LOCAL = _LINK_FLAGS + _FIXED32.pack(0x100)
_LINK_FLAGS_REMOTE = _LINK_FLAGS + _FIXED32.pack(0x300)

_keys: dict[str, bytes] = {}


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64  # int64 in two's complement: ten bytes
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag: bytes, data: bytes) -> bytes:
    return tag + _varint(len(data)) + data


def _key(key: str) -> bytes:
    """The encoded key field of a KeyValue; keys recur on every span, so they are kept."""
    encoded = _keys.get(key)
    if encoded is None:
        encoded = _delimited(_T1_LEN, key.encode())
        if len(_keys) < 4096:
            _keys[key] = encoded
    return encoded


def _any_value(value: Any) -> bytes:
    """An AnyValue message; raises for what OTLP cannot carry (the attribute is left out)."""
    kind = type(value)
    if kind is str:
        return _delimited(_T1_LEN, value.encode())
    if kind is bool:
        return _ANY_BOOL + (b"\x01" if value else b"\x00")
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError("an integer beyond int64")
        return _ANY_INT + _varint(value)
    if kind is float:
        return _ANY_DOUBLE + _DOUBLE.pack(value)
    if value is None:
        return b""
    if isinstance(value, bool):
        return _ANY_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _delimited(_T1_LEN, str(value).encode())
    if isinstance(value, int):
        return _any_value(int(value))
    if isinstance(value, float):
        return _ANY_DOUBLE + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _delimited(_ANY_BYTES, value)
    if isinstance(value, Sequence):
        items = b"".join(_delimited(_T1_LEN, _any_value(item)) for item in value)
        return _delimited(_ANY_ARRAY, items)
    if isinstance(value, Mapping):
        pairs = b"".join(
            _delimited(_T1_LEN, _key(str(k)) + _delimited(_T2_LEN, _any_value(v)))
            for k, v in value.items()
        )
        return _delimited(_ANY_KVLIST, pairs)
    raise TypeError(f"an attribute value of type {kind.__name__}")


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
    if not attributes:
        return []
    parts = []
    for key, value in attributes.items():
        try:
            pair = _key(key) + _delimited(_T2_LEN, _any_value(value))
        except Exception as exc:  # as the SDK's encoder does: the attribute is left out
            _log.warning("appsdk: attribute %r not exported: %s", key, exc)
            continue
        parts.append(_delimited(tag, pair))
    return parts


def _span(span: ReadableSpan) -> bytes:
    context = span.context
    assert context is not None
    parts = [
        _T1_LEN + b"\x10" + context.trace_id.to_bytes(16, "big"),
        _T2_LEN + b"\x08" + context.span_id.to_bytes(8, "big"),
    ]
    trace_state = context.trace_state
    if trace_state:
        state = ",".join(f"{key}={value}" for key, value in trace_state.items())
        parts.append(_delimited(_T3_LEN, state.encode()))
    parent = span.parent
    if parent is not None:
        parts.append(_T4_LEN + b"\x08" + parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_delimited(_T5_LEN, span.name.encode()))
    parts.append(_SPAN_KIND + _SMALL[_KIND[span.kind]])
    if span.start_time:
        parts.append(_SPAN_START + _FIXED64.pack(span.start_time))
    if span.end_time:
        parts.append(_SPAN_END + _FIXED64.pack(span.end_time))
    parts += _attributes(_SPAN_ATTRIBUTES, span.attributes)
    if span.dropped_attributes:
        parts.append(_SPAN_DROPPED_ATTRIBUTES + _varint(span.dropped_attributes))
    for event in span.events:
        event_parts = [_EVENT_TIME + _FIXED64.pack(event.timestamp)] if event.timestamp else []
        if event.name:
            event_parts.append(_delimited(_T2_LEN, event.name.encode()))
        event_parts += _attributes(_T3_LEN, event.attributes)
        if event.dropped_attributes:
            event_parts.append(_EVENT_DROPPED + _varint(event.dropped_attributes))
        parts.append(_delimited(_SPAN_EVENTS, b"".join(event_parts)))
    if span.dropped_events:
        parts.append(_SPAN_DROPPED_EVENTS + _varint(span.dropped_events))
    for link in span.links:
        linked = link.context
        link_parts = [
            _T1_LEN + b"\x10" + linked.trace_id.to_bytes(16, "big"),
            _T2_LEN + b"\x08" + linked.span_id.to_bytes(8, "big"),
            *_attributes(_T4_LEN, link.attributes),
        ]
        if link.dropped_attributes:
            link_parts.append(_LINK_DROPPED + _varint(link.dropped_attributes))
        link_parts.append(_LINK_FLAGS_REMOTE if linked.is_remote else _LINK_FLAGS_LOCAL)
        parts.append(_delimited(_SPAN_LINKS, b"".join(link_parts)))
    if span.dropped_links:
        parts.append(_SPAN_DROPPED_LINKS + _varint(span.dropped_links))
    parts.append(_delimited(_SPAN_STATUS, _status(span)))
    parts.append(_FLAGS_REMOTE if _remote(parent) else _FLAGS_LOCAL)
    return b"".join(parts)


def _remote(parent: SpanContext | None) -> bool:
    return parent is not None and parent.is_remote


def _status(span: ReadableSpan) -> bytes:
    status = span.status
    message = status.description
    code = status.status_code.value
    return (_delimited(_T2_LEN, message.encode()) if message else b"") + (
        _STATUS_CODE + _SMALL[code] if code else b""
    )


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    parts = [_delimited(_T1_LEN, scope.name.encode())] if scope.name else []
    if scope.version:
        parts.append(_delimited(_T2_LEN, scope.version.encode()))
    parts += _attributes(_T3_LEN, scope.attributes)
    return b"".join(parts)


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` for ``spans``, grouped by resource and
    instrumentation scope as the SDK's encoder groups them."""
    # Resources by identity (a process has one; the SDK's grouping hashes each by its JSON),
    # scopes by what the SDK compares: name, version and schema URL.
    resources: dict[int, tuple[Any, dict[Any, tuple[InstrumentationScope | None, list[bytes]]]]]
    resources = {}
    for span in spans:
        resource = span.resource
        entry = resources.get(id(resource))
        if entry is None:
            entry = resources[id(resource)] = (resource, {})
        scope = span.instrumentation_scope
        scope_key = None if scope is None else (scope.name, scope.version, scope.schema_url)
        scoped = entry[1].get(scope_key)
        if scoped is None:
            scoped = entry[1][scope_key] = (scope, [])
        scoped[1].append(_delimited(_T2_LEN, _span(span)))
    body = []
    for resource, scopes in resources.values():
        resource_parts = [_delimited(_T1_LEN, b"".join(_attributes(_T1_LEN, resource.attributes)))]
        for scope, encoded in scopes.values():
            scope_parts = [_delimited(_T1_LEN, _scope(scope)), *encoded]
            if scope is not None and scope.schema_url:
                scope_parts.append(_delimited(_T3_LEN, scope.schema_url.encode()))
            resource_parts.append(_delimited(_T2_LEN, b"".join(scope_parts)))
        if resource.schema_url:
            resource_parts.append(_delimited(_T3_LEN, resource.schema_url.encode()))
        body.append(_delimited(_T1_LEN, b"".join(resource_parts)))
    return b"".join(body)
