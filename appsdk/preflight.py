"""What the settings name is checked before it is used: files, folders, keys, price table.

``configure()`` raises the first problem :func:`preflight` finds; ``appsdk doctor`` reports
each one, with the same message. No network: a few stats and one small write per folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from appsdk.errors import ConfigError

if TYPE_CHECKING:
    from appsdk.config import Settings
    from appsdk.sampling import Sampling

__all__ = ["Preflight", "preflight"]

P = ParamSpec("P")
T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Preflight:
    """What :func:`preflight` found: each failed setting's error, and what it loaded."""

    problems: dict[str, ConfigError]
    """Setting -> its error, in the order checked; empty when every check passed."""
    sampling: Sampling | None = None
    """The ``sampling`` setting's rules, parsed (None when unset or not asked for)."""


def preflight(settings: Settings, *, load_sampling: bool = True) -> Preflight:
    """Check what the settings in use name: ``configure()`` raises the first problem,
    ``appsdk doctor`` reports each one, with the same message.

    The price table is loaded (once: :meth:`PriceTable.in_force` returns it under these
    settings) and the sampling rules parsed; the prompt folder, when set and read (no
    Langfuse), exists; the folders of the local store, the spool and the feedback outbox,
    when in use, can be created and written; every feedback signing key is long enough.
    No network: a few stats and one small write per folder.
    """
    problems: dict[str, ConfigError] = {}

    def check(field: str, run: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
        try:
            return run(*args, **kwargs)
        except ConfigError as exc:
            problems[field] = exc
            return None

    if settings.prices is not None:
        from appsdk.pricing import PriceTable  # pydantic models: built only when used

        check("prices", PriceTable.load_for, settings)
    if "prompts_dir" in settings.model_fields_set and not settings.langfuse_enabled:
        check("prompts_dir", _check_prompts_dir, settings.prompts_dir)
    if settings.feedback_secret is not None:
        check("feedback_secret", _check_feedback_keys, settings.feedback_keys)
    written: dict[Path, str | None] = {}  # one write per folder, however many files it holds
    for field, path, fix in _databases_in_use(settings):
        check(field, _check_database, field, path, fix, written)
    sampling = None
    if load_sampling and settings.sampling:
        from appsdk.sampling import Sampling  # pydantic models: built only when used

        sampling = check("sampling", Sampling.parse, settings.sampling)
    return Preflight(problems, sampling)


_WRITABLE_FOLDER = "point it at a file in a folder this process can write"


def _databases_in_use(settings: Settings) -> list[tuple[str, Path, str]]:
    """The SQLite files these settings will write: (setting, path, fix)."""
    found = []
    if settings.tracing_enabled and settings.local_store_enabled:
        fix = f"{_WRITABLE_FOLDER}, or set APPSDK_LOCAL_STORE=never to keep no local traces"
        found.append(("store_path", settings.store_path, fix))
    if settings.tracing_enabled and any(spec.spooled for spec in settings.exporters):
        fix = f"{_WRITABLE_FOLDER}, or set APPSDK_SPOOL=false to drop what a backend cannot take"
        found.append(("spool_path", settings.spool_path, fix))
    if settings.langfuse_enabled:  # the outbox is read at configure(), and feedback waits there
        found.append(("feedback_outbox", settings.feedback_outbox, _WRITABLE_FOLDER))
    return found


_VARIABLE = {
    "store_path": "APPSDK_STORE_PATH / store_path",
    "spool_path": "APPSDK_SPOOL_PATH / spool_path",
    "feedback_outbox": "APPSDK_FEEDBACK_OUTBOX / feedback_outbox",
}


def _check_database(field: str, path: Path, fix: str, written: dict[Path, str | None]) -> None:
    """Raise ConfigError if the database at ``path`` could not be created: its folder is
    created if missing (0700, as :mod:`appsdk.sqlite` makes it) and a file is created and
    removed in it. The database itself is left to :mod:`appsdk.sqlite`, which makes it 0600.
    """
    if path.is_dir():
        from appsdk.config import Settings

        example = path.absolute() / Path(Settings.model_fields[field].default).name
        raise ConfigError(
            _VARIABLE[field],
            f"{path.absolute()} is a folder, not a file",
            f"give the path of a file, e.g. {example}",
        )
    folder = path.absolute().parent
    if folder not in written:
        written[folder] = _write_problem(folder)
    problem = written[folder]
    if problem is not None:
        raise ConfigError(_VARIABLE[field], problem, fix)


def _write_problem(folder: Path) -> str | None:
    """Why nothing can be written in ``folder`` (created if missing), or None."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        return f"cannot create the folder {folder}: a file of that name is in the way"
    except OSError as exc:
        return f"cannot create the folder {folder} ({exc.strerror or type(exc).__name__})"
    # Named like a database: a process tightening this folder meanwhile (appsdk.sqlite keeps a
    # folder of databases private) still takes it for appsdk's own.
    probe = folder / f".appsdk-write-check-{os.getpid()}-{os.urandom(4).hex()}.db"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.close(os.open(probe, flags, 0o600))
    except OSError as exc:
        return f"cannot write in the folder {folder} ({exc.strerror or type(exc).__name__})"
    with contextlib.suppress(OSError):
        probe.unlink()
    return None


def _check_prompts_dir(folder: Path) -> None:
    if not folder.is_dir():
        where = folder.absolute()
        raise ConfigError(
            "APPSDK_PROMPTS_DIR / prompts_dir",
            f"{where} is not a folder" if where.exists() else f"{where} does not exist",
            "point it at the folder of your prompt files (<name>.json), or unset it "
            "to read ./prompts",
        )


def _check_feedback_keys(keys: list[str]) -> None:
    from appsdk.config import FEEDBACK_KEY_MIN_CHARS as least

    short = [str(number) for number, key in enumerate(keys, start=1) if len(key) < least]
    if keys and not short:
        return
    raise ConfigError(
        "APPSDK_FEEDBACK_SECRET / feedback_secret",
        f"{'key' if len(short) == 1 else 'keys'} {', '.join(short)} of {len(keys)} "
        f"{'is' if len(short) == 1 else 'are'} shorter than {least} characters "
        "(keys are never shown)"
        if keys
        else "holds no key, only commas",
        f"use random keys of at least {least} characters, comma-separated, newest last "
        "(python -c 'import secrets; print(secrets.token_urlsafe(32))')",
    )
