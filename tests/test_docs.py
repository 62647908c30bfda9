"""The configuration reference names every variable appsdk reads."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices

from appsdk.config import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_setting_and_variable_is_in_the_configuration_reference() -> None:
    text = (DOCS / "configuration.md").read_text()
    for name, info in Settings.model_fields.items():
        assert f"`{name}`" in text, name
        alias = info.validation_alias
        assert isinstance(alias, AliasChoices)
        for variable in alias.choices:
            assert f"`{variable}`" in text, variable
    for variable in (
        "APPSDK_CAPTURE",
        "APPSDK_PSEUDONYM_KEY",
        "APPSDK_PRICES",
        "APPSDK_PROMPTS_DIR",
        "APPSDK_FEEDBACK_SECRET",
        "APPSDK_FEEDBACK_OUTBOX",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
    ):
        assert f"`{variable}`" in text, variable
