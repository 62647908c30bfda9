from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

import appsdk
from appsdk import ConfigError, ModelPrice, PriceTable, sim
from appsdk.testing import capture_spans

TABLE = PriceTable(
    currency="EUR",
    prices=(
        ModelPrice(model="sim-llama-3-8b", input="0.20", output="0.60", cached_input="0.05"),
        ModelPrice(pattern=r"(?i)^sim-llama-3-70b", input="0.90", output="2.70", unit="1M"),
        ModelPrice(model="tiny", input="0.0001", output="0.0002", unit="1K"),
        ModelPrice(model="per-token", input="0.000003", output="0.000015", unit="token"),
    ),
)

# model, input tokens, cached of those, output tokens, expected (input, output, total), by hand
HAND_COMPUTED = [
    ("sim-llama-3-8b", 1_000_000, 0, 1_000_000, ("0.20", "0.60", "0.80")),
    ("sim-llama-3-8b", 1000, 400, 250, ("0.00014", "0.00015", "0.00029")),
    ("sim-llama-3-70b-instruct", 2_000_000, 0, 500_000, ("1.80", "1.35", "3.15")),
    ("tiny", 1500, 0, 3000, ("0.00015", "0.0006", "0.00075")),
    ("per-token", 7, 0, 11, ("0.000021", "0.000165", "0.000186")),
    ("per-token", 0, 0, 0, ("0", "0", "0")),
]


@pytest.mark.parametrize(("model", "prompt", "cached", "completion", "expected"), HAND_COMPUTED)
def test_cost_matches_a_hand_computed_table(
    model: str, prompt: int, cached: int, completion: int, expected: tuple[str, str, str]
) -> None:
    cost = TABLE.cost(
        model, input_tokens=prompt, output_tokens=completion, cached_input_tokens=cached
    )
    assert cost is not None
    assert (cost["input"], cost["output"], cost["total"]) == tuple(Decimal(e) for e in expected)


def test_a_model_without_a_price_has_no_cost() -> None:
    assert TABLE.cost("gpt-unknown", input_tokens=10, output_tokens=10) is None


def test_cost_goes_on_the_generation_as_numbers_and_is_absent_without_a_price() -> None:
    with (
        sim.running() as simulator,
        capture_spans() as captured,
        appsdk.LLMDClient(base_url=simulator.base_url, prices=TABLE) as client,
    ):
        client.chat(model="sim-llama-3-8b", messages=[{"role": "user", "content": "a b c d"}])
        client.chat(model="sim-embed", messages=[{"role": "user", "content": "x"}])
    priced, unpriced = (o for o in captured.observations() if o.type == "generation")
    # 4 input tokens at 0.20/1M and 12 output tokens at 0.60/1M
    assert json.loads(priced.attributes["langfuse.observation.cost_details"]) == {
        "input": 0.0000008,
        "output": 0.0000072,
        "total": 0.000008,
    }
    assert isinstance(priced.attributes["gen_ai.usage.cost"], float)
    assert "langfuse.observation.cost_details" not in unpriced.attributes
    assert "gen_ai.usage.cost" not in unpriced.attributes


def test_price_tables_load_from_a_file_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        'currency = "USD"\n[[prices]]\nmodel = "m"\ninput = "1"\noutput = "2"\nunit = "1K"\n'
    )
    monkeypatch.setenv("APPSDK_PRICES", str(path))
    table = PriceTable.from_env()
    assert table is not None and table.cost("m", input_tokens=1000, output_tokens=0) == {
        "input": Decimal(1),
        "output": Decimal(0),
        "total": Decimal(1),
    }


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"prices": [{"model": "m", "input": "-1", "output": "1"}]}', "greater than or equal"),
        ('{"prices": [{"input": "1", "output": "1"}]}', "exactly one of model"),
        ('{"prices": [{"pattern": "([", "input": "1", "output": "1"}]}', "not a valid regex"),
        ("not json", "not a valid price table"),
    ],
)
def test_a_bad_price_file_names_the_variable_and_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="APPSDK_PRICES") as caught:
        PriceTable.from_file(path)
    assert problem in str(caught.value)
