"""The configuration reference names every variable appsdk reads: every one is a Settings field."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pydantic import AliasChoices

import appsdk
from appsdk.config import Settings
from appsdk.llmd import base as llmd_base

DOCS = Path(__file__).resolve().parent.parent / "docs"
PACKAGE = Path(appsdk.__file__).resolve().parent
# Read by the llm-d client itself, as the openai package reads them (not settings of appsdk).
CLIENT_VARIABLES = (llmd_base.OPENAI_BASE_URL, llmd_base.OPENAI_API_KEY)


def _variables() -> dict[str, str]:
    """Each variable of Settings and the field it sets."""
    found: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        assert isinstance(alias, AliasChoices), f"{name} is set by no variable"
        for variable in alias.choices:
            assert isinstance(variable, str)
            found[variable] = name
    return found


def test_every_setting_and_variable_is_in_the_configuration_reference() -> None:
    text = (DOCS / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"`{name}`" in text, name
    for variable in [*_variables(), *CLIENT_VARIABLES]:
        assert f"`{variable}`" in text, variable


def test_every_setting_is_documented_on_its_field() -> None:
    """The field's doc string is where its meaning lives (the reference repeats it)."""
    source = ast.parse((PACKAGE / "config.py").read_text())
    (settings,) = (
        node for node in source.body if isinstance(node, ast.ClassDef) and node.name == "Settings"
    )
    documented = {
        statement.target.id
        for statement, following in zip(settings.body, settings.body[1:], strict=False)
        if isinstance(statement, ast.AnnAssign)
        and isinstance(statement.target, ast.Name)
        and isinstance(following, ast.Expr)
        and isinstance(following.value, ast.Constant)
        and isinstance(following.value.value, str)
    }
    assert set(Settings.model_fields) <= documented, set(Settings.model_fields) - documented


def _reads_environment(node: ast.AST) -> bool:
    """``os.environ`` (or ``environ``) in any use, or ``os.getenv``."""
    if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
        return isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id in ("environ", "getenv")


def test_only_the_settings_read_the_environment() -> None:
    """No module reads a variable on its own: it is a Settings field, read by config.py (the
    llm-d client's OPENAI_* excepted, read as openai reads them)."""
    allowed = {PACKAGE / "config.py", PACKAGE / "llmd" / "base.py"}
    readers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path not in allowed
        and any(_reads_environment(node) for node in ast.walk(ast.parse(path.read_text())))
    )
    assert readers == []


def test_every_appsdk_variable_the_package_names_is_a_setting() -> None:
    """A variable named in a message, a help text or a doc string exists (no stale names)."""
    named = {
        (str(path.relative_to(PACKAGE)), variable)
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        for variable in re.findall(r"\bAPPSDK_[A-Z0-9_]*[A-Z0-9]", node.value)
    }
    assert named, "the scan finds the variables"
    variables = _variables()
    assert sorted((where, v) for where, v in named if v not in variables) == []


def test_every_page_the_package_points_to_exists() -> None:
    """A doc string's "see docs/x.md" leads somewhere (no page outside the repository)."""
    root = PACKAGE.parent
    pointed = {
        (str(path.relative_to(PACKAGE)), page)
        for path in PACKAGE.rglob("*.py")
        for page in re.findall(r"[\w./-]+\.md\b", path.read_text())
    }
    assert pointed, "the scan finds the pages"
    assert sorted((where, page) for where, page in pointed if not (root / page).exists()) == []
