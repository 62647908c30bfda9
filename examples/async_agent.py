"""An async agent: tool and agent observations, concurrent generations through llm-d.

Run: ``python examples/async_agent.py`` (starts the simulator unless ``LLMD_BASE_URL`` is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import appsdk
from appsdk import sim

MODEL = "sim-llama-3-8b"


@appsdk.observe(as_type="tool")
async def lookup_weather(city: str) -> str:
    await asyncio.sleep(0)
    return f"sunny in {city}"


@appsdk.observe(as_type="agent")
async def plan_trip(client: appsdk.AsyncLLMDClient, city: str) -> str:
    weather = await lookup_weather(city)
    reply = await client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": f"Plan a day in {city}: {weather}"}],
        fairness_id="travel-team",
    )
    return reply.text


@contextlib.contextmanager
def gateway() -> Iterator[str]:
    if url := os.environ.get("LLMD_BASE_URL"):
        yield url
        return
    with sim.running(exporter="appsdk") as simulator:
        yield simulator.base_url


async def run(base_url: str) -> list[str]:
    async with appsdk.AsyncLLMDClient(base_url=base_url) as client:
        cities = ["Lisbon", "Kyoto", "Quito"]
        return list(await asyncio.gather(*(plan_trip(client, c) for c in cities)))


def main() -> None:
    appsdk.configure(service_name="async-agent")
    with gateway() as url:
        plans = asyncio.run(run(url))
    appsdk.shutdown()
    for plan in plans:
        print(plan)


if __name__ == "__main__":
    main()
