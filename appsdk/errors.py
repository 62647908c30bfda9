"""appsdk's exceptions: one root, one tree.

::

    AppSDKError
    ├── ConfigError (also ValueError)      bad configuration: names the variable and the fix
    ├── StoreError                         the local trace store cannot be opened or read
    └── (the llm-d client's and feedback errors subclass AppSDKError too)

What a user calls directly (configure, the CLI, the client, feedback) raises these. The tracing
path (decorator, policy, processors, exporters) never raises into user code.
"""

from __future__ import annotations

__all__ = ["AppSDKError", "ConfigError", "StoreError"]


class AppSDKError(Exception):
    """Root of every error appsdk raises."""


class ConfigError(AppSDKError, ValueError):
    """A configuration value is missing or invalid.

    Args:
        field: the setting or environment variable at fault.
        problem: what is wrong with it.
        fix: what to do instead.
    """

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}: {problem}. Fix: {fix}")


class StoreError(AppSDKError):
    """The embedded trace store cannot be opened, written or read."""
