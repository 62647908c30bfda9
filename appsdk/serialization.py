"""Python values as JSON-able data, one step at a time, the way Langfuse's serializer reads them.

``@observe`` is a drop-in for ``langfuse.observe``, so an argument or a return value is recorded
as langfuse records it: datetimes in ISO form (UTC as ``Z``, naive ones in local time), enums by
value, UUIDs and paths as strings, bytes decoded, integers beyond JavaScript's safe range and
non-finite floats as strings (Langfuse's server runs on Node), exceptions as ``Type: message``,
objects by their slots or attributes, nesting cut at depth 20.

Where langfuse would run the application's code, materialize a whole container or record
machinery, this module does not (docs/migrating.md lists the differences):

* Fields are read where Python keeps them (``__dict__``, slot descriptors, dataclass fields, a
  pydantic model's field values) without calling properties, ``__getattr__``, computed fields
  or serializers, and without copying: a dataclass of a million floats is not deep-copied.
* Containers come back as lazy views (:class:`Fields`, :class:`Items`) that the walk in
  :mod:`appsdk.recorder` reads only as far as it records: ``range(10**7)`` or a lazy sequence
  of a million rows costs what its first items cost.
* Objects that hold I/O or runtime state (clients, sessions, pools, connections, sockets,
  locks, loggers, threads, event loops, files, appsdk's own clients) are recorded as a
  placeholder naming the type: their internals are other users' requests and credentials.
* A NamedTuple is a mapping (its field names carry meaning, ``password`` among them); a URL
  split by ``urllib.parse`` keeps its password as a field of its own.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import io
import logging
import math
import socket
import sys
import threading
import types
from collections.abc import Iterable, Sequence, Set
from itertools import islice
from pathlib import PurePath
from typing import Any, NamedTuple
from urllib.parse import ParseResult, SplitResult
from uuid import UUID

from pydantic import BaseModel, SecretBytes, SecretStr

__all__ = [
    "MAX_DEPTH",
    "Fields",
    "Items",
    "convert",
    "count_render_error",
    "float_value",
    "int_value",
    "key_text",
    "kind_of",
    "render_errors",
    "safe_text",
    "unrenderable",
]

MAX_DEPTH = 20
_MAX_SAFE_INT = 2**53 - 1
# Bytes decoded past what a string may record are never recorded: read this much more only.
_BYTES_PAST_LIMIT = 8


class Fields(NamedTuple):
    """An object's fields (or a mapping's items) as ``(key, value)`` pairs, read lazily.

    ``source`` says what langfuse would have made of the object, which the depth count
    follows: ``dataclass`` / ``model`` (``asdict()`` / ``model_dump()`` made a dict, serialized
    one level deeper, and converted the dataclasses, or models, below it into plain dicts),
    ``object`` (recorded by its attributes or slots: below it, nothing was converted), or
    ``""`` (a mapping). ``named`` marks an object recorded by its ``__dict__`` (a cycle back to
    it is named by its bare type name, as langfuse names it).
    """

    pairs: Iterable[tuple[Any, Any]]
    size: int
    source: str = ""
    named: bool = False


class Items(NamedTuple):
    """A container's items, read lazily; ``size`` is how many there are in all."""

    items: Iterable[Any]
    size: int


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


def unrenderable(value: Any) -> str:
    """What langfuse's serializer writes for a value it could not convert."""
    return f'"<not serializable object of type: {type(value).__name__}>"'


_render_errors = [0]


def render_errors() -> int:
    """How many values the recorder could not render in this process (each recorded as a
    placeholder instead): the application's hooks that raised, mostly."""
    return _render_errors[0]


def count_render_error() -> None:
    # A lost increment under a race costs one count, never a lock on every traced call.
    _render_errors[0] += 1


def safe_text(value: object) -> str:
    """``str(value)`` where the application's ``__str__`` may raise (formatting lazily from
    state that is missing): then ``<unprintable TypeName>``, counted, never raised."""
    try:
        text = str(value)
    except Exception:
        count_render_error()
        return f"<unprintable {type(value).__name__}>"
    return text if type(text) is str else str.__str__(text)


def key_text(key: Any) -> str:
    """A dict key as JSON writes it (``None`` -> ``null``, ``1`` -> ``1``, enums by value)."""
    if type(key) is str:
        return key
    if isinstance(key, enum.Enum):
        key = key.value
    if key is None or isinstance(key, bool):
        return "null" if key is None else ("true" if key else "false")
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, int):
        return str(int_value(key))
    if isinstance(key, float):
        return str(float_value(key))
    converted = convert(key, 1, 16, 256)
    if isinstance(converted, str):
        return converted
    try:  # a tuple key reads as "(1, 2)"; another object's repr is the application's code
        return repr(key)
    except Exception:
        count_render_error()
        return f"<{type(key).__name__}>"


def _datetime(value: datetime.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.datetime.now().astimezone().tzinfo)
    text = value.isoformat()
    if value.tzinfo is not None and value.tzinfo.tzname(None) == "UTC":
        return text.replace("+00:00", "Z")
    return text


def _machinery_types() -> tuple[type, ...]:
    kinds: list[type] = [
        io.IOBase,
        socket.socket,
        threading.Thread,
        type(threading.Lock()),
        type(threading.RLock()),
        threading.Condition,
        threading.Event,
        threading.Semaphore,
        logging.Logger,
        logging.LoggerAdapter,
        logging.Handler,
        types.ModuleType,
        types.FrameType,
        types.TracebackType,
        types.CoroutineType,
    ]
    return tuple(kinds)


_MACHINERY = _machinery_types()
# Packages whose objects are machinery, not data: HTTP and database clients and their pools,
# servers, tracing and the SDKs that hold credentials. Their data models (pydantic, dataclasses,
# NamedTuples: an openai ChatCompletion, say) are still recorded as data.
_MACHINERY_PACKAGES = frozenset(
    {
        "aiohttp",
        "anthropic",
        "appsdk",
        "asyncio",
        "asyncpg",
        "boto3",
        "botocore",
        "concurrent",
        "grpc",
        "h11",
        "h2",
        "httpcore",
        "httpx",
        "langfuse",
        "multiprocessing",
        "openai",
        "opentelemetry",
        "psycopg",
        "psycopg2",
        "pymongo",
        "queue",
        "redis",
        "requests",
        "selectors",
        "sqlalchemy",
        "sqlite3",
        "ssl",
        "starlette",
        "subprocess",
        "urllib3",
        "uvicorn",
        "websockets",
    }
)
_kind_cache: dict[type, str] = {}


def kind_of(cls: type) -> str:
    """How objects of ``cls`` are recorded: ``machinery``, ``dataclass``, ``model``,
    ``namedtuple``, ``url`` or ``object``; decided once per type."""
    kind = _kind_cache.get(cls)
    if kind is not None:
        return kind
    if isinstance(_static(cls, "recorded_as"), str):
        kind = "recorded"
    elif issubclass(cls, BaseModel):
        kind = "model"
    elif dataclasses.is_dataclass(cls):
        kind = "dataclass"
    elif issubclass(cls, SplitResult | ParseResult):
        kind = "url"
    elif issubclass(cls, tuple) and isinstance(_static(cls, "_fields"), tuple):
        kind = "namedtuple"
    elif issubclass(cls, _MACHINERY) or _is_machinery_module(cls):
        kind = "machinery"
    else:
        kind = "object"
    if len(_kind_cache) < 4096:
        _kind_cache[cls] = kind
    return kind


# Modules of those packages that hold data: langfuse's prompt clients carry the prompt.
_DATA_MODULES = frozenset({"langfuse.model"})


def _is_machinery_module(cls: type) -> bool:
    if cls.__module__ in _DATA_MODULES:
        return False
    for klass in cls.__mro__[:-1]:
        module = klass.__dict__.get("__module__")
        if isinstance(module, str) and module.partition(".")[0] in _MACHINERY_PACKAGES:
            return True
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and issubclass(cls, asyncio.AbstractEventLoop | asyncio.Future)


def _static(cls: type, name: str) -> Any:
    """``name`` looked up on the class as Python stores it: no descriptor, no ``__getattr__``."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


def _slot_value(value: Any, cls: type, name: str) -> Any:
    """A slot's value read through its descriptor; None while unset (``__getattr__`` is the
    application's code and is not called, langfuse's ``getattr(obj, slot, None)`` would)."""
    descriptor = _static(cls, name)
    if isinstance(descriptor, types.MemberDescriptorType):
        try:
            return descriptor.__get__(value, cls)
        except AttributeError:
            return None
    if name == "__dict__":
        return _instance_dict(value)
    return None


def _instance_dict(value: Any) -> dict[str, Any] | None:
    try:
        attributes = object.__getattribute__(value, "__dict__")
    except AttributeError:
        return None
    return attributes if isinstance(attributes, dict) else None


def _object_fields(value: Any, cls: type) -> Fields | str:
    slots = _static(cls, "__slots__")
    if slots is not None:
        names = (slots,) if isinstance(slots, str) else tuple(slots)
        pairs = ((name, _slot_value(value, cls, name)) for name in names)
        return Fields(pairs, len(names), "object")
    attributes = _instance_dict(value)
    if attributes is None:
        return f"<{cls.__name__}>"
    return Fields(attributes.items(), len(attributes), "object", named=True)


def _class_fields(value: type) -> Fields | str:
    """A class (not an instance) as langfuse records it: a dataclass's is not serializable
    (``asdict`` refuses a class), a class with slots by its slots' descriptors, any other by
    its ``vars()``, read without running the metaclass's code."""
    if dataclasses.is_dataclass(value):
        return unrenderable(value)
    slots = _static(value, "__slots__")
    if slots is not None:
        names = (slots,) if isinstance(slots, str) else tuple(slots)
        pairs = ((name, _class_attribute(value, name)) for name in names)
        return Fields(pairs, len(names), "object")
    attributes = type.__dict__["__dict__"].__get__(value)
    return Fields(attributes.items(), len(attributes), "object", named=True)


def _class_attribute(value: type, name: str) -> Any:
    if name == "__dict__":  # the class's own namespace, as getattr(cls, "__dict__") gives it
        return type.__dict__["__dict__"].__get__(value)
    return _static(value, name)


def _model_fields(value: BaseModel, cls: type) -> Fields:
    # Field values live in __dict__ (extra ones in __pydantic_extra__): read there, computed
    # fields and serializers (the application's code) are not run.
    stored = _instance_dict(value) or {}
    names = [name for name in type(value).model_fields if name in stored]
    extra = getattr(value, "__pydantic_extra__", None) or {}
    pairs = [(name, stored[name]) for name in names] + list(extra.items())
    return Fields(pairs, len(pairs), "model")


def _dataclass_fields(value: Any, cls: type) -> Fields:
    names = [field.name for field in dataclasses.fields(value)]
    stored = _instance_dict(value)
    if stored is not None:
        pairs: Iterable[tuple[str, Any]] = ((name, stored.get(name)) for name in names)
    else:
        pairs = ((name, _slot_value(value, cls, name)) for name in names)
    return Fields(pairs, len(names), "dataclass")


def _url_fields(value: SplitResult | ParseResult) -> Fields:
    # The netloc without its password, and the password as a field of its own: a key named
    # password is what the policy redacts.
    netloc = value.netloc
    password = value.password
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    pairs = [(name, getattr(value, name)) for name in value._fields]
    pairs[1] = ("netloc", netloc)
    if password is not None:
        pairs.append(("password", password))
    return Fields(pairs, len(pairs))


def _sequence(value: Sequence[Any], limit: int) -> Items:
    count = len(value)
    return Items((value[index] for index in range(min(count, limit))), count)


def _array(value: Any, limit: int) -> Any:
    """A numpy-like array or scalar: an item at a time, never ``tolist()`` of the whole."""
    if getattr(value, "ndim", None) == 0:
        return value.item()
    count = len(value)
    return Items((value[index] for index in range(min(count, limit))), count)


def _frame(value: Any, limit: int) -> Any:
    """A pandas-like frame or series: its first rows, as ``to_dict`` gives them."""
    return value.head(limit).to_dict()


def _buffer(value: bytes | bytearray | memoryview, limit: int) -> str:
    data = bytes(value[: limit + _BYTES_PAST_LIMIT]) if len(value) > limit else bytes(value)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(data) - 4 or len(value) <= limit:
            return "<not serializable bytes>"
        text = data[: error.start].decode("utf-8")  # cut inside a character, not invalid
    return text


def convert(value: Any, depth: int, limit: int, chars: int) -> Any:
    """``value`` converted one step, as langfuse's ``EventSerializer.default`` would; never
    raises, never runs properties or ``__getattr__``.

    Args:
        depth: the nesting depth of ``value`` (the top-level value is 1).
        limit: the most items that will be recorded of it.
        chars: the most characters that will be recorded of it (a buffer is cut there).

    Returns:
        A str, int, float, bool or None (recorded as it is); :class:`Fields` or :class:`Items`
        (to be walked further); or the text the serializer writes for the object.
    """
    try:
        return _convert(value, depth, limit, chars)
    except Exception:
        count_render_error()
        return unrenderable(value)


def _convert(value: Any, depth: int, limit: int, chars: int) -> Any:
    cls = type(value)
    kind = kind_of(cls)
    if kind == "recorded":  # appsdk's own wrappers (a traced generator) say how
        return _static(cls, "recorded_as")
    if isinstance(value, SecretStr | SecretBytes):
        return "<secret>"
    if isinstance(value, datetime.datetime):
        return _datetime(value)
    if isinstance(value, float):
        return float_value(value)
    if isinstance(value, Exception | KeyboardInterrupt):
        return f"{cls.__name__}: {safe_text(value)}"
    if "Streaming" in cls.__name__:
        return safe_text(value)
    if isinstance(value, enum.Enum):
        return convert(value.value, depth + 1, limit, chars)
    if isinstance(value, UUID | PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _buffer(value, chars)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, int):
        return int_value(value)
    if isinstance(value, str):
        return str.__str__(value)
    if kind == "machinery":
        return f"<{cls.__name__}>"
    if depth >= MAX_DEPTH:
        return f"<{cls.__name__}>"
    if isinstance(value, type):
        return _class_fields(value)
    if kind == "dataclass":
        return _dataclass_fields(value, cls)
    if kind == "model":
        return _model_fields(value, cls)
    if kind == "url":
        return _url_fields(value)
    if kind == "namedtuple":
        return Fields(zip(value._fields, value, strict=False), len(value))
    module = cls.__module__.partition(".")[0]
    if module == "numpy" and hasattr(value, "item"):
        return _array(value, limit)
    if module == "pandas" and hasattr(value, "head"):
        return _frame(value, limit)
    if isinstance(value, tuple | list):
        return Items(value, len(value))
    if isinstance(value, Set):
        return Items(islice(value, limit), len(value))
    if isinstance(value, dict):  # another Mapping is an object to langfuse (a mappingproxy)
        return Fields(iter(value.items()), len(value))
    if isinstance(value, Sequence):
        return _sequence(value, limit)
    return _object_fields(value, cls)
