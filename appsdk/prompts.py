"""Prompt versions linked to generations: ``use_prompt`` and the active prompt."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["active_prompt", "use_prompt"]

_active: contextvars.ContextVar[Any] = contextvars.ContextVar("appsdk_prompt", default=None)


@contextmanager
def use_prompt(prompt: Any) -> Iterator[Any]:
    """Link every generation started inside the block to ``prompt`` (name + version).

    A fallback prompt (``is_fallback``) is never linked; it is recorded as metadata.

    Example:
        >>> with use_prompt(appsdk.get_prompt("qa")) as prompt:  # doctest: +SKIP
        ...     client.chat(model="m", messages=prompt.compile(question=q))
    """
    token = _active.set(prompt)
    try:
        yield prompt
    finally:
        _active.reset(token)


def active_prompt() -> Any:
    """The prompt of the innermost ``use_prompt`` block, or None."""
    return _active.get()
