"""Python values as JSON-able data, the way Langfuse's ``EventSerializer`` makes them.

``@observe`` is a drop-in for ``langfuse.observe``, so an argument or a return value must be
recorded as langfuse would record it: datetimes in ISO form (UTC as ``Z``, naive ones in local
time), enums by value, UUIDs and paths as strings, bytes decoded, integers beyond JavaScript's
safe range and non-finite floats as strings (Langfuse's server runs on Node), exceptions as
``Type: message``, objects by their slots or attributes, cycles broken by the type's name and
nesting cut at depth 20. The policy (:mod:`appsdk.policy`) walks the containers; this module
converts one value that is not a plain JSON type.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import BaseModel, SecretBytes, SecretStr

__all__ = ["MAX_DEPTH", "float_value", "int_value", "key_text", "plain"]

MAX_DEPTH = 20
_MAX_SAFE_INT = 2**53 - 1


def int_value(value: int) -> int | str:
    """An int as Langfuse records it: a string beyond JavaScript's safe integer range."""
    return value if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT else str(value)


def float_value(value: float) -> float | str:
    """A float as Langfuse records it: NaN and the infinities as strings (valid JSON)."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "-Infinity" if value < 0 else "Infinity"


def key_text(key: Any) -> str:
    """A dict key as JSON writes it (``None`` -> ``null``, ``1`` -> ``1``, enums by value)."""
    if type(key) is str:
        return key
    if isinstance(key, enum.Enum):
        key = key.value
    if key is None or isinstance(key, bool):
        return "null" if key is None else ("true" if key else "false")
    if isinstance(key, int | float | str):
        return str(float_value(key)) if isinstance(key, float) else str(key)
    converted = plain(key, 1)
    return converted if isinstance(converted, str) else repr(key)


def _datetime(value: datetime.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.datetime.now().astimezone().tzinfo)
    text = value.isoformat()
    if value.tzinfo is not None and value.tzinfo.tzname(None) == "UTC":
        return text.replace("+00:00", "Z")
    return text


def plain(value: Any, depth: int) -> Any:
    """``value`` converted one step, as ``EventSerializer.default`` does; never raises.

    Args:
        depth: the nesting depth of ``value`` (the top-level value is 1).

    Returns:
        A str, int, float, list or dict (to be walked further), or the string the serializer
        writes for the object. Objects recorded by their attributes come back as a dict.
    """
    try:
        return _plain(value, depth)
    except Exception:
        return f'"<not serializable object of type: {type(value).__name__}>"'


def _plain(value: Any, depth: int) -> Any:
    placeholder = getattr(type(value), "recorded_as", None)
    if isinstance(placeholder, str):  # appsdk's own wrappers (a traced generator) say how
        return placeholder
    if isinstance(value, SecretStr | SecretBytes):
        return "<secret>"
    if isinstance(value, datetime.datetime):
        return _datetime(value)
    if isinstance(value, float):
        return float_value(value)
    if isinstance(value, Exception | KeyboardInterrupt):
        return f"{type(value).__name__}: {value}"
    if "Streaming" in type(value).__name__:
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, UUID | Path):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return "<not serializable bytes>"
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, int):
        return int_value(value)
    if isinstance(value, str):
        return str.__str__(value)
    if depth >= MAX_DEPTH:
        return f"<{type(value).__name__}>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, tuple | set | frozenset | list | Sequence):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    slots = getattr(value, "__slots__", None)
    if slots is not None:
        names = (slots,) if isinstance(slots, str) else slots
        return {name: getattr(value, name, None) for name in names}
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        return dict(attributes)
    return f"<{type(value).__name__}>"
