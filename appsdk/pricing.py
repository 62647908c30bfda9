"""Price tables and exact cost: your own price per token for self-hosted models.

Cost is computed in Decimal and sent as numbers (Langfuse ignores strings). A model with no
price sends no cost, so Langfuse's own server-side pricing still applies to it.
"""

from __future__ import annotations

import json
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from appsdk.errors import ConfigError

if TYPE_CHECKING:
    from appsdk.config import Settings

__all__ = ["ModelPrice", "PriceTable"]

_PER_UNIT = {"token": Decimal(1), "1K": Decimal(1_000), "1M": Decimal(1_000_000)}


class ModelPrice(BaseModel):
    """The price of one model (or every model a regex matches).

    Example:
        >>> ModelPrice(model="llama-3-8b", input="0.10", output="0.40", unit="1M")
        ModelPrice(model='llama-3-8b', ...)
    """

    model_config = ConfigDict(frozen=True)

    model: str | None = None
    """Exact model name."""
    pattern: str | None = None
    """Regex over the model name, like Langfuse's model definitions, e.g. ``(?i)^llama-3.*``."""
    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)
    """Price of prompt tokens served from the prefix cache; default: the input price."""
    unit: Literal["token", "1K", "1M"] = "1M"
    """Prices are per token, per thousand or per million tokens."""

    @model_validator(mode="after")
    def _one_matcher(self) -> ModelPrice:
        if (self.model is None) == (self.pattern is None):
            raise ValueError("give exactly one of model (an exact name) or pattern (a regex)")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a valid regex: {exc}") from None
        return self

    def matches(self, model: str) -> bool:
        if self.model is not None:
            return self.model == model
        return re.search(self.pattern or "", model) is not None


class PriceTable(BaseModel):
    """Prices per model in one currency; :meth:`cost` turns token counts into cost.

    Example:
        >>> table = PriceTable(prices=[ModelPrice(model="m", input="1", output="2", unit="1K")])
        >>> table.cost("m", input_tokens=1000, output_tokens=500)
        {'input': Decimal('1'), 'output': Decimal('1'), 'total': Decimal('2')}
    """

    model_config = ConfigDict(frozen=True)

    currency: str = "USD"
    prices: tuple[ModelPrice, ...] = ()

    def price_for(self, model: str) -> ModelPrice | None:
        """Exact names first, then patterns in table order."""
        for price in self.prices:
            if price.model == model:
                return price
        for price in self.prices:
            if price.pattern is not None and price.matches(model):
                return price
        return None

    def cost(
        self, model: str, *, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
    ) -> dict[str, Decimal] | None:
        """Cost by Langfuse's cost-detail keys, or None when the model has no price."""
        price = self.price_for(model)
        if price is None:
            return None
        per = _PER_UNIT[price.unit]
        cached = min(max(cached_input_tokens, 0), input_tokens)
        cached_price = price.cached_input if price.cached_input is not None else price.input
        input_cost = ((input_tokens - cached) * price.input + cached * cached_price) / per
        output_cost = output_tokens * price.output / per
        return {"input": input_cost, "output": output_cost, "total": input_cost + output_cost}

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        """Load a JSON or TOML file: ``{"currency": "EUR", "prices": [{...}, ...]}``.

        Raises:
            ConfigError: the file is missing or not a valid price table.
        """
        file = Path(path)
        try:
            text = file.read_text()
            data: Any = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
            return cls.model_validate(data)
        except OSError as exc:
            raise ConfigError(
                "APPSDK_PRICES",
                f"cannot read {file}: {exc.strerror}",
                "point it at a JSON or TOML price table",
            ) from None
        except (ValueError, tomllib.TOMLDecodeError, ValidationError) as exc:
            raise ConfigError(
                "APPSDK_PRICES",
                f"{file} is not a valid price table: {exc}",
                "see docs/prompts-and-cost.md for the format",
            ) from None

    @classmethod
    def in_force(cls) -> PriceTable | None:
        """The table of the settings in force (``prices`` / ``APPSDK_PRICES``), or None.

        Loaded once per configuration: clients made under the same settings share it, and
        none reads the file again.

        Raises:
            ConfigError: the file is missing or not a valid price table.
        """
        from appsdk.config import settings_in_force

        settings = settings_in_force("prices")
        loaded = _loaded
        if loaded is not None and loaded[0] is settings:
            return loaded[1]
        return cls.load_for(settings)

    @classmethod
    def load_for(cls, settings: Settings) -> PriceTable | None:
        """Load the table ``settings`` name (``prices``), or None, and keep it as theirs.

        ``configure()`` calls it, so a missing or bad file fails there, not at the first
        client call; :meth:`in_force` then returns this table under those settings.

        Raises:
            ConfigError: the file is missing or not a valid price table.
        """
        global _loaded
        table = cls.from_file(settings.prices) if settings.prices is not None else None
        _loaded = (settings, table)
        return table

    @classmethod
    def from_env(cls) -> PriceTable | None:
        """The table named by ``APPSDK_PRICES`` (or the configured ``prices``), or None: the
        same as :meth:`in_force`."""
        return cls.in_force()


# The settings the table was loaded for (held, so no other object takes their identity), and
# the table. One configuration is in force at a time.
_loaded: tuple[Settings, PriceTable | None] | None = None
