"""The models the simulator serves (no server imports here: the CLI's help lists them)."""

from __future__ import annotations

__all__ = ["MODELS", "served_name"]

MODELS = ("sim-llama-3-8b", "sim-llama-3-70b", "sim-embed")
# The names the docs use for a real gateway's models are served too, so every snippet runs
# against the simulator as written.
_ALIASES = {"llama-3-8b": "sim-llama-3-8b", "llama-3-70b": "sim-llama-3-70b", "embed": "sim-embed"}


def served_name(model: str) -> str | None:
    """The simulator model ``model`` names (itself or a docs alias), or None if it serves none."""
    if model in MODELS:
        return model
    return _ALIASES.get(model)
