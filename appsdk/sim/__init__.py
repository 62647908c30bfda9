"""An llm-d gateway + vLLM simulator for tests, demos and users' own tests.

Example::

    from appsdk import sim

    with sim.running() as simulator:
        client = appsdk.LLMDClient(base_url=simulator.base_url)
        client.chat(model="sim-llama-3-8b", messages=[{"role": "user", "content": "hi"}])
        assert simulator.received[-1].headers["traceparent"]
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter

from appsdk.sim.app import ReceivedRequest, SimConfig, create_app
from appsdk.sim.models import MODELS
from appsdk.sim.tracing import SimTracing

__all__ = ["MODELS", "ReceivedRequest", "SimConfig", "Simulator", "running", "serve", "serving"]


@dataclass
class Simulator:
    """A running simulator: its URL and what it received."""

    base_url: str
    app: Any

    @property
    def received(self) -> list[ReceivedRequest]:
        state = self.app.state.sim
        with state.lock:
            return list(state.received)


def _server(app: Any, host: str, port: int) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, stopped at once: its own loop sees ``should_exit`` only at a 0.1 s
        tick and its shutdown always pauses 0.1 s, which a test suite pays per simulator."""

        ready = threading.Event()
        _loop: asyncio.AbstractEventLoop | None = None
        _wake: asyncio.Event | None = None

        async def startup(self, sockets: Any = None) -> None:
            self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
            await super().startup(sockets)
            self.ready.set()

        def install_signal_handlers(self) -> None:  # the host process owns its signals
            return None

        async def main_loop(self) -> None:
            assert self._wake is not None
            counter = 0  # on_tick refreshes the Date header when counter % 10 == 0: each second
            while not await self.on_tick(counter):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                counter += 10

        def stop(self) -> None:
            self.should_exit = True
            if self._loop is not None and self._wake is not None:
                with contextlib.suppress(RuntimeError):  # the loop has ended already
                    self._loop.call_soon_threadsafe(self._wake.set)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for server in self.servers:
                server.close()
            for sock in sockets or []:
                sock.close()
            for connection in list(self.server_state.connections):
                connection.shutdown()
            state = self.server_state
            deadline = time.monotonic() + float(self.config.timeout_graceful_shutdown or 1)
            while (state.connections or state.tasks) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            for task in state.tasks:
                task.cancel()
            for server in self.servers:
                await server.wait_closed()
            await self.lifespan.shutdown()

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
    )
    server = Server(config)
    server.ready = threading.Event()
    return server


@contextmanager
def serving(app: Any, *, port: int = 0) -> Iterator[str]:
    """Serve any ASGI app on 127.0.0.1 in a background thread; yields its base URL.

    Leaving the block stops the server at once; requests still open get up to a second.
    """
    server = _server(app, "127.0.0.1", port)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve()), daemon=True, name="appsdk-serve"
    )
    thread.start()
    if not server.ready.wait(30):
        raise RuntimeError("the server did not start within 30 s")
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.stop()
        thread.join(10)


@contextmanager
def running(
    *,
    config: SimConfig | None = None,
    exporter: SpanExporter | str | None = None,
    port: int = 0,
) -> Iterator[Simulator]:
    """Serve the simulator on 127.0.0.1 in a background thread while the block runs.

    Args:
        config: default latencies and token counts.
        exporter: where the simulated gateway and vLLM spans go: a SpanExporter, ``"appsdk"``
            (appsdk's pipeline, so they land with the app's spans), or None (nowhere).
        port: 0 picks a free port.
    """
    tracing = SimTracing(exporter)
    app = create_app(config, tracing)
    try:
        with serving(app, port=port) as url:
            yield Simulator(url, app)
    finally:
        tracing.shutdown()


def serve(port: int, *, config: SimConfig | None = None) -> None:
    """Serve the simulator in the foreground (``appsdk sim --port N``).

    Its gateway and vLLM spans go where appsdk's configuration sends traces (the local store
    by default, Langfuse or OTLP from the environment), so an application's trace shows the
    whole tree, as in the demo.
    """
    import uvicorn

    import appsdk

    appsdk.configure(service_name="llm-d-simulator")
    tracing = SimTracing("appsdk")
    try:
        uvicorn.run(create_app(config, tracing), host="127.0.0.1", port=port, log_level="info")
    finally:
        tracing.shutdown()
        appsdk.shutdown()
