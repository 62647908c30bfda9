"""Prompt versions: fetched from Langfuse (or a local folder), linked to generations.

``get_prompt`` goes through the configured langfuse client (its cache, labels, versions and
fallback); without Langfuse it reads a local folder of prompt files behind the same call.
``use_prompt`` links every generation started inside it to the prompt's name and version;
Langfuse drops the whole generation if the version is not an int or the name comes without
it, and a fallback prompt is not a stored version, so fallbacks are never linked.
"""

from __future__ import annotations

import contextvars
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from appsdk import runtime as _runtime
from appsdk.errors import AppSDKError

__all__ = ["LocalPrompt", "PromptError", "active_prompt", "get_prompt", "use_prompt"]

_active: contextvars.ContextVar[Any] = contextvars.ContextVar("appsdk_prompt", default=None)
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
DEFAULT_LABEL = "production"


class PromptError(AppSDKError):
    """A prompt could not be found or read, and no fallback was given."""


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


def _compile_text(template: str, variables: dict[str, Any]) -> str:
    return _VARIABLE.sub(lambda m: str(variables.get(m.group(1), m.group(0))), template)


@dataclass(frozen=True)
class LocalPrompt:
    """A prompt version from the local prompt folder, shaped like Langfuse's prompt clients.

    Example:
        >>> LocalPrompt("qa", 1, "Answer: {{question}}").compile(question="why?")
        'Answer: why?'
    """

    name: str
    version: int
    prompt: str | list[dict[str, str]]
    type: Literal["text", "chat"] = "text"
    labels: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    is_fallback: bool = False

    def compile(self, **variables: Any) -> Any:
        """The prompt with ``{{variable}}`` filled in (text, or a list of chat messages)."""
        if isinstance(self.prompt, str):
            return _compile_text(self.prompt, variables)
        return [
            {**message, "content": _compile_text(message.get("content", ""), variables)}
            for message in self.prompt
        ]


def _load_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib  # only for a TOML prompt file; not on every import

        data: Any = tomllib.loads(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
        raise PromptError(f"{path}: a prompt file holds {{'name', 'type', 'versions': [...]}}")
    return data


def _local_prompt(
    name: str, version: int | None, label: str | None, folder: Path
) -> LocalPrompt | None:
    for suffix in (".json", ".toml"):
        path = folder / f"{name}{suffix}"
        if path.exists():
            break
    else:
        return None
    try:
        data = _load_file(path)
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise PromptError(f"cannot read prompt file {path}: {exc}") from None
    wanted_label = label if label is not None or version is not None else DEFAULT_LABEL
    versions = sorted(data["versions"], key=lambda entry: int(entry.get("version", 0)))
    for entry in reversed(versions):
        labels = tuple(entry.get("labels", ()))
        if entry is versions[-1]:
            labels = (*labels, "latest")  # as Langfuse labels the newest version
        if (version is not None and entry.get("version") == version) or (
            version is None and wanted_label in labels
        ):
            return LocalPrompt(
                name=data.get("name", name),
                version=int(entry["version"]),
                prompt=entry["prompt"],
                type=data.get("type", "text"),
                labels=labels,
                config=dict(entry.get("config", {})),
            )
    return None


def get_prompt(
    name: str,
    *,
    version: int | None = None,
    label: str | None = None,
    type: Literal["text", "chat"] = "text",
    cache_ttl_seconds: int | None = None,
    fallback: str | list[dict[str, str]] | None = None,
    folder: str | Path | None = None,
    **langfuse_options: Any,
) -> Any:
    """A prompt version: from Langfuse when it is configured, else from the local folder.

    Args:
        version: an exact version; else ``label`` (default ``production``).
        fallback: used (and marked ``is_fallback``, never linked) when the prompt cannot be
            fetched.
        folder: the local prompt folder (default: the ``prompts_dir`` setting,
            ``APPSDK_PROMPTS_DIR`` or ``prompts``).

    Raises:
        PromptError: the prompt does not exist or cannot be fetched, and there is no fallback.
    """
    pipeline = _runtime.current()
    client = pipeline.langfuse_client if pipeline is not None else None
    if client is not None and folder is None:
        try:
            return client.get_prompt(
                name,
                version=version,
                label=label,
                type=type,
                cache_ttl_seconds=cache_ttl_seconds,
                fallback=fallback,
                **langfuse_options,
            )
        except Exception as exc:  # the langfuse SDK raises its own and httpx's errors
            raise PromptError(
                f"cannot fetch prompt {name!r} from Langfuse: {exc.__class__.__name__}: {exc}"
            ) from exc
    from appsdk.config import settings_in_force  # not on the decorator's import path

    where = Path(folder or settings_in_force("prompts_dir").prompts_dir)
    found = _local_prompt(name, version, label, where)
    if found is not None:
        return found
    if fallback is not None:
        kind: Literal["text", "chat"] = "text" if isinstance(fallback, str) else "chat"
        return LocalPrompt(name=name, version=0, prompt=fallback, type=kind, is_fallback=True)
    selector = f"version {version}" if version is not None else f"label {label or DEFAULT_LABEL!r}"
    raise PromptError(
        f"no prompt {name!r} with {selector} in {where.resolve()}; add {name}.json there, "
        "configure Langfuse, or pass fallback="
    )
