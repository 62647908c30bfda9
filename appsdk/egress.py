"""The egress guard: the policy applied to the content keys of every exported span."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appsdk.pipeline import Pipeline

__all__ = ["install"]


def install(pipeline: Pipeline) -> None:
    """Add the egress guard to ``pipeline`` (filled in by the policy module)."""
    return None
