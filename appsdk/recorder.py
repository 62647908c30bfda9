"""One bounded walk of a Python value into JSON-able data, redacted and cut under a policy.

Every decorated call passes its arguments and its result through here, on the caller's thread,
so the walk is built to be harmless on whatever an application hands it:

* One walk with one budget for the whole value: characters (``max_value_chars``) and items per
  container (``max_items``). What lies past the budget is never read: a lazy sequence of a
  million rows costs its first rows, a 1 MB string the characters recorded (plus a few KB
  scanned past the cut, so a secret cut in half is still recognised).
* Every container is checked for cycles (a list holding itself, chunks pointing back to their
  document), not only objects: a cycle is named, never followed.
* The application's hooks are guarded: a conversion that raises is recorded as a placeholder
  and counted (:func:`appsdk.serialization.render_errors`), never raised into the call.
* Text that is really structure is read as structure: a JSON object or array passed as text
  (tool-call arguments, ``json.dumps(...)``) is parsed so the key rule applies inside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any

from appsdk.redaction import is_secret_key
from appsdk.serialization import (
    MAX_DEPTH,
    Fields,
    Items,
    convert,
    count_render_error,
    float_value,
    int_value,
    key_text,
    kind_of,
)

if TYPE_CHECKING:
    from appsdk.policy import PolicyEngine

__all__ = ["SECRET_PLACEHOLDER", "Walk", "render_string"]

SECRET_PLACEHOLDER = "[REDACTED:SECRET]"
# How far past the cut a text is still scanned: a secret that starts before the cut and runs on
# across it is recognised by its first bytes (no detector needs more than a few dozen; a PEM
# block cut short is redacted to its end).
_READ_PAST_CUT = 4096
# Texts at least this long are remembered by identity, the last _REMEMBERED of them per policy.
_REMEMBER_FROM = 256
_REMEMBERED = 32
# How deep langfuse's media pass looks (levels counted from 1 at the top).
_MEDIA_LEVELS = 10
# What asdict() (below a dataclass) and model_dump() (below a model) turn into plain dicts.
_FLATTENED = {"dataclass": ("dataclass",), "model": ("dataclass", "model")}
# What an item costs of the budget, beside its text: a separator, quotes, a short number.
_ITEM_COST = 6


class Walk:
    """One rendering of one value: the budget left and the containers being walked.

    Args:
        engine: the policy's compiled rules (limits, redactor, secret keys).
        redact: apply the key rule and the redactor (the ``redacted`` mode).
        strings: redact strings too; False applies the key rule only (JSON text read as
            structure is redacted as text afterwards).
    """

    __slots__ = (
        "_engine",
        "_flat",
        "_left",
        "_media",
        "_path",
        "_redact",
        "_strings",
        "secret_keys_found",
    )

    def __init__(self, engine: PolicyEngine, redact: bool, *, strings: bool = True) -> None:
        self._engine = engine
        self._redact = redact
        self._strings = strings and redact
        self._left = engine.max_value_chars
        self._path: set[int] = set()
        # Below a dataclass, what langfuse's asdict() already made plain dicts ("dataclass"),
        # below a pydantic model what model_dump() did ("model"): they count one level each.
        self._flat = ""
        # Before serializing, langfuse's media pass walks dicts and lists 10 levels deep and
        # replaces each pydantic model it meets by its model_dump(): the level of the value
        # at hand on that walk, 0 once off it (below anything else, or deeper than 10).
        self._media = 1
        self.secret_keys_found = 0

    def value(self, value: Any, depth: int = 1) -> Any:
        """``value`` as JSON-able data; ``depth`` counts as langfuse's serializer counts."""
        kind = type(value)
        if kind is str:
            return self.text(value)
        # Scalars are paid for by the container holding them (_ITEM_COST an item).
        if value is None or kind is bool:
            return value
        if kind is int:
            safe = int_value(value)
            if type(safe) is str:
                return self.text(safe)
            return self._engine.integer(value) if self._strings else value
        if kind is float:
            if self._strings and (value >= 1e12 or value <= -1e12) and value != float("inf"):
                return self._engine.large_float(value)  # a card or a phone passed as a float
            return float_value(value)
        if kind is dict:
            if depth >= MAX_DEPTH:
                return "<dict>"
            if not value:  # no kwargs: the most common mapping there is
                return {}
            if self._media:
                return self._on_media_pass(value, depth)
            return self._mapping(value, value.items(), len(value), depth, False)
        if kind is list or kind is tuple:
            if depth >= MAX_DEPTH:
                return f"<{kind.__name__}>"
            if not value:
                return []
            if self._media:
                return self._on_media_pass(value, depth)
            return self._items(value, value, len(value), depth)
        return self._converted(value, depth)

    def _on_media_pass(
        self, value: dict[Any, Any] | list[Any] | tuple[Any, ...], depth: int
    ) -> Any:
        """A dict, list or tuple met on langfuse's media pass: it goes on into dicts and
        lists (the next level), not into tuples."""
        media = self._media
        inside = type(value) is not tuple and media < _MEDIA_LEVELS
        self._media = media + 1 if inside else 0
        try:
            if type(value) is dict:
                return self._mapping(value, value.items(), len(value), depth, False)
            return self._items(value, value, len(value), depth)
        finally:
            self._media = media

    def _converted(self, value: Any, depth: int) -> Any:
        flat, media = self._flat, self._media
        kind = kind_of(type(value))
        inner_flat, inner_media = flat, 0
        if (flat and kind in _FLATTENED[flat]) or (media and kind == "model"):
            # langfuse's asdict()/model_dump() above, or its media pass, made it a dict.
            if depth >= MAX_DEPTH:
                return "<dict>"
            depth -= 1  # the extra level of a dict made from the object is not there
            if media:  # dumped by the media pass: its dict is one level on, its values two
                inner_flat = "model"
                inner_media = media + 2 if media + 2 <= _MEDIA_LEVELS else 0
        engine = self._engine
        chars = max(min(engine.max_chars, self._left), 0)
        converted = convert(value, depth, engine.max_items, chars)
        if isinstance(converted, Fields):
            source = converted.source
            if source in ("dataclass", "model"):
                depth += 1  # langfuse serializes the dict it made one level deeper
                if depth >= MAX_DEPTH:
                    return "<dict>"
                if inner_flat != "model":
                    inner_flat = source
            elif source == "object":  # langfuse converts nothing below an object
                inner_flat = ""
            elif media and issubclass(type(value), dict):
                inner_media = media + 1 if media < _MEDIA_LEVELS else 0
            self._flat, self._media = inner_flat, inner_media
            try:
                return self._mapping(value, converted.pairs, converted.size, depth, converted.named)
            finally:
                self._flat, self._media = flat, media
        if isinstance(converted, Items):
            self._media = (
                media + 1
                if media and issubclass(type(value), list) and media < _MEDIA_LEVELS
                else 0
            )
            try:
                return self._items(value, converted.items, converted.size, depth)
            finally:
                self._media = media
        if type(converted) is str:
            return self.text(converted)
        if converted is value:  # a subclass of a scalar type, already plain
            return converted
        return self.value(converted, depth + 1)

    def text(self, text: str) -> str:
        """A string as recorded: redacted, cut to the per-string limit and the budget left."""
        engine = self._engine
        limit = engine.max_chars
        left = self._left
        if left < limit:
            limit = left if left > 0 else 0
        if self._strings:
            rendered = render_string(engine, text, limit)
        elif len(text) > limit:
            rendered = f"{text[:limit]}...[truncated {len(text) - limit} chars]"
        else:
            rendered = text
        self._left = left - len(rendered) - 2
        return rendered

    def _cycle(self, container: Any, named: bool) -> str:
        """The name that stands for a cycle back to ``container`` (langfuse's, for objects)."""
        name = type(container).__name__
        return name if named else f"<{name}>"

    def _items(self, container: Any, items: Iterable[Any], count: int, depth: int) -> Any:
        identity = id(container)
        path = self._path
        if identity in path:
            return self._cycle(container, False)
        path.add(identity)
        out: list[Any] = []
        limit = self._engine.max_items
        self._left -= (count if count < limit else limit) * _ITEM_COST
        value = self.value
        depth += 1
        try:
            for item in items if count <= limit else islice(items, limit):
                if self._left <= 0:
                    out.append(f"[truncated {count - len(out)} items]")
                    return out
                out.append(value(item, depth))
            if count > limit:
                out.append(f"[truncated {count - limit} items]")
        except Exception:  # the application's __iter__ / __getitem__ raised midway
            count_render_error()
            out.append(f"[not rendered: {count - len(out)} items]")
        finally:
            path.discard(identity)
        return out

    def _mapping(
        self, container: Any, pairs: Iterable[tuple[Any, Any]], count: int, depth: int, named: bool
    ) -> Any:
        identity = id(container)
        path = self._path
        if identity in path:
            return self._cycle(container, named)
        path.add(identity)
        out: dict[str, Any] = {}
        engine = self._engine
        limit = engine.max_items
        self._left -= (count if count < limit else limit) * _ITEM_COST
        redact = self._redact
        scrub_names = engine.redactor.redact_repeated if self._strings else None
        extra = engine.secret_keys
        value = self.value
        depth += 1
        try:
            for key, item in pairs:
                if len(out) == limit or self._left <= 0:
                    out["[truncated]"] = f"{count - len(out)} more items"
                    break
                name = key if type(key) is str else key_text(key)
                if len(name) > 256:
                    name = self.text(name) if redact else self._key(name)
                else:
                    # A key can carry content too ({"bob@example.com": ...}); keys recur.
                    if scrub_names is not None:
                        name = scrub_names(name)
                    self._left -= len(name)
                if redact and item is not None and is_secret_key(name, extra):
                    self.secret_keys_found += 1
                    out[name] = SECRET_PLACEHOLDER
                else:
                    out[name] = value(item, depth)
        except Exception:
            count_render_error()
            out["[not rendered]"] = f"{count - len(out)} items"
        finally:
            path.discard(identity)
        return out

    def _key(self, name: str) -> str:
        left = self._left
        if len(name) > left:
            name = f"{name[: max(left, 0)]}...[truncated {len(name) - max(left, 0)} chars]"
        self._left = left - len(name) - 4
        return name


def render_string(engine: PolicyEngine, text: str, limit: int) -> str:
    """``text`` redacted and cut to ``limit`` characters (marked when cut)."""
    full = limit == engine.max_chars
    recent = engine.recent
    if full:
        remembered = recent.get(id(text))
        if remembered is not None and remembered[0] is text:
            return remembered[1]
    source = text
    if len(text) <= limit and text[:1] in ("{", "[") and text[-1:] in ("}", "]"):
        source = _structured(engine, text)
    # Scrub before cutting, so a cut never leaves half a secret behind; what lies far past
    # the cut is never recorded, so it is not read either (a 1 MB text costs as 20 KB).
    scanned = source if len(source) <= limit + _READ_PAST_CUT else source[: limit + _READ_PAST_CUT]
    redacted = engine.redactor.redact(scanned)
    if len(redacted) > limit or scanned is not source:
        dropped = max(len(redacted) - limit, 0) + len(source) - len(scanned)
        redacted = f"{redacted[:limit]}...[truncated {dropped} chars]"
    if full and len(text) >= _REMEMBER_FROM:
        # Nested observations pass the same objects on (a query in, an answer out): a
        # text is immutable, so its rendering is reused by identity (held, so never reused).
        if len(recent) >= _REMEMBERED:
            recent.clear()
        recent[id(text)] = (text, redacted)
    return redacted


def _structured(engine: PolicyEngine, text: str) -> str:
    """JSON text with the key rule applied inside it; the text as given when no key matched
    (so its formatting survives), else the JSON written again with those values replaced."""
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if not isinstance(parsed, dict | list):
        return text
    walk = Walk(engine, True, strings=False)
    walked = walk.value(parsed)
    if not walk.secret_keys_found:
        return text
    head = text[:256]
    compact = ", " not in head and ": " not in head
    return json.dumps(
        walked,
        ensure_ascii="\\u" in text,
        separators=(",", ":") if compact else (", ", ": "),
    )
