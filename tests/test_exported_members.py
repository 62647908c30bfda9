"""The public API is appsdk._WHERE (name -> module): __all__, the type checkers' imports and
the errors public calls document all agree with it."""

from __future__ import annotations

import ast
import inspect
import re
from importlib import import_module
from pathlib import Path
from typing import Any

import appsdk
from appsdk.errors import AppSDKError


def test_the_public_api_is_the_lazy_map() -> None:
    assert appsdk.__all__ == sorted(appsdk.__all__)
    assert set(appsdk.__all__) == {*appsdk._WHERE, "__version__"}
    assert dir(appsdk) == appsdk.__all__
    for name, module in appsdk._WHERE.items():
        value = getattr(appsdk, name)
        assert value is getattr(import_module(module), name), name
        assert getattr(value, "__module__", "").startswith("appsdk"), name


def _type_checking_imports() -> dict[str, str]:
    """What ``appsdk/__init__.py`` imports under ``if TYPE_CHECKING:``: name -> module."""
    tree = ast.parse(Path(appsdk.__file__).read_text())
    (block,) = (
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )
    imported: dict[str, str] = {}
    for statement in block.body:
        assert isinstance(statement, ast.ImportFrom) and statement.module is not None
        for alias in statement.names:
            # "X as X": an explicit re-export, which mypy --strict needs to see.
            assert alias.asname == alias.name, alias.name
            imported[alias.name] = statement.module
    return imported


def test_the_type_checkers_imports_are_the_lazy_map() -> None:
    assert _type_checking_imports() == appsdk._WHERE


def _documented_errors(function: Any) -> set[str]:
    """The names in the ``Raises:`` section of a doc string."""
    doc = inspect.getdoc(function) or ""
    section = re.search(r"^Raises:\n((?:[ \t]+.*\n?|\n)*)", doc, re.MULTILINE)
    return set(re.findall(r"\b[A-Z]\w+\b", section.group(1))) if section else set()


def _public_callables() -> list[tuple[str, Any]]:
    """Every public function, and every public method a public class defines itself."""
    found: list[tuple[str, Any]] = []
    for name in appsdk._WHERE:
        value = getattr(appsdk, name)
        found.append((name, value))
        if inspect.isclass(value):
            for attribute, member in vars(value).items():
                if attribute.startswith("_") and attribute != "__init__":
                    continue
                function = getattr(member, "__func__", getattr(member, "fget", member))
                if callable(function):
                    found.append((f"{name}.{attribute}", function))
    return found


def test_every_error_a_public_call_documents_can_be_caught_by_an_exported_name() -> None:
    """The error itself is exported, or its family is (``ModelNotFoundError`` is an
    ``LLMDError``); ``AppSDKError``, the root of all, does not count."""
    exported = {getattr(appsdk, name) for name in appsdk._WHERE}
    checked = set()
    for where, function in _public_callables():
        namespace = vars(import_module(getattr(function, "__module__", "appsdk")))
        for name in _documented_errors(function):
            error = namespace.get(name)
            if not (isinstance(error, type) and issubclass(error, AppSDKError)):
                continue
            checked.add(name)
            families = {base for base in error.__mro__ if base is not AppSDKError}
            assert families & exported, f"{where} raises {name}, which appsdk does not export"
    assert {"ConfigError", "PromptError", "FeedbackValidationError"} <= checked


def test_importing_appsdk_does_not_import_langfuse() -> None:
    import subprocess
    import sys

    code = "import sys, appsdk; print('langfuse' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_submodule_shadows_a_public_name() -> None:
    """``@appsdk.observe`` stays the decorator after every submodule has been imported."""
    import importlib
    import pkgutil
    import types

    for module in pkgutil.walk_packages(appsdk.__path__, "appsdk."):
        if not module.name.startswith(("appsdk.sim", "appsdk.integrations")):
            importlib.import_module(module.name)
    for name in appsdk.__all__:
        assert not isinstance(getattr(appsdk, name), types.ModuleType), name
