"""What real apps hand the recorder: caller-thread cost of one decorated call per hostile value.

Each case is a value an application passes to (or returns from) a decorated function: the
shared client, cycles, lazy and huge containers, objects whose hooks run code. The cost is the
decorated call's median minus the undecorated call's, default policy, no-op exporter; beside it,
a decorated call with a short string (the floor) and what is recorded of the value.

Standalone: ``python -m benchmarks.recorder [--quick]``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, computed_field

import appsdk
from appsdk.batching import BatchExportProcessor
from benchmarks.common import NoOpExporter, interleaved, table


class _LazyError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("lazy message state is gone")


class _Rows(Sequence[int]):
    """A lazy sequence of a million rows (a database cursor, a dataset)."""

    def __len__(self) -> int:
        return 1_000_000

    def __getitem__(self, index: Any) -> Any:
        return {"row": index}


@dataclasses.dataclass
class _Embeddings:
    vectors: list[float]


class _Answer(BaseModel):
    text: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tokens(self) -> int:
        return len(self.text.split())


def _cases() -> dict[str, Callable[[], Any]]:
    """Each case returns the value passed to the decorated function (made once)."""
    document: dict[str, Any] = {"title": "doc"}
    document["chunks"] = [{"text": f"chunk {i} " * 40, "document": document} for i in range(8)]
    looped: list[Any] = []
    looped.extend([looped, looped, looped])
    client = appsdk.LLMDClient(base_url="http://127.0.0.1:9/v1", api_key="sk-bench")
    values: dict[str, Any] = {
        "short string (the floor)": "What is the capital of France?",
        "the shared LLMDClient": client,
        "a document whose 8 chunks point back to it": document,
        "a list holding itself 3 times": looped,
        "range(10**7)": range(10**7),
        "a lazy Sequence of 1M rows": _Rows(),
        "a dataclass of 1M floats": _Embeddings([0.5] * 1_000_000),
        "a 20 MB bytearray": bytearray(20 * 1024 * 1024),
        "a pydantic model with a computed field": _Answer(text="a b c"),
        "JSON text with a password key (tool arguments)": json.dumps(
            {"query": "weather in Paris", "password": "hunter2-hunter2"}
        ),
        "an error whose __str__ raises": _LazyError(),
    }
    return {name: (lambda value=value: value) for name, value in values.items()}


def _recorded_chars(value: Any) -> int:
    rendered = appsdk.Policy().render("inputs", {"args": [value], "kwargs": {}})
    return len(rendered or "")


def run(quick: bool = False) -> tuple[str, dict[str, float]]:
    pipeline = appsdk.configure(local_store="never")
    pipeline.add_exporter(BatchExportProcessor(NoOpExporter(), name="noop"), None)

    def handler(value: Any) -> str:
        return "ok"

    traced = appsdk.observe(name="handler")(handler)
    cases = _cases()
    variants: dict[str, Callable[[], object]] = {"undecorated": lambda: handler(None)}
    for name, make in cases.items():
        value = make()
        variants[name] = lambda value=value: traced(value)
    medians = interleaved(variants, calls=20 if quick else 200, rounds=3 if quick else 9)
    base = medians["undecorated"]
    overhead = {name: medians[name] - base for name in cases}
    floor = overhead["short string (the floor)"]
    rows = [
        (
            name,
            f"{overhead[name]:.1f}",
            f"{overhead[name] / floor:.2f}",
            str(_recorded_chars(make())),
        )
        for name, make in cases.items()
    ]
    appsdk.shutdown()
    text = table(rows, ("value passed in", "overhead us", "x the floor", "chars recorded"))
    return text, {f"recorder: {name}": value for name, value in overhead.items()}


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv)[0])
