"""A FastAPI chat endpoint that returns a feedback token, and the feedback endpoint beside it.

Serve it from the repository's root: ``LLMD_BASE_URL=http://gateway APPSDK_FEEDBACK_SECRET=...
uvicorn examples.fastapi_app:app``; the app configures appsdk in its lifespan, so it is traced
however it is served. Run it as a script for a self-check against the simulator.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from pydantic import BaseModel

import appsdk
from appsdk import sim
from appsdk.feedback import default_client
from appsdk.integrations import feedback_app

SECRET = os.environ.get("APPSDK_FEEDBACK_SECRET") or secrets.token_urlsafe(32)
MODEL = "sim-llama-3-8b"


class Question(BaseModel):
    question: str


def current_user(request: Request) -> str | None:
    # A real app reads its session here; the demo trusts a header.
    return request.headers.get("x-user")


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    # The server's startup and shutdown: tracing lives exactly as long as the app serves.
    appsdk.configure(service_name="fastapi-chat")
    yield
    appsdk.shutdown()


def create_app(llmd_base_url: str) -> FastAPI:
    api = FastAPI(title="chat with feedback", lifespan=lifespan)
    client = appsdk.LLMDClient(base_url=llmd_base_url)

    @api.post("/chat")
    def chat(body: Question, request: Request) -> dict[str, str]:
        user = current_user(request)
        with (
            appsdk.trace_attributes(user_id=user),
            appsdk.start_observation(
                "chat-endpoint", as_type="chain", input=body.question
            ) as observation,
        ):
            reply = client.chat(model=MODEL, messages=[{"role": "user", "content": body.question}])
            observation.update(output=reply.text)
        token = appsdk.issue_feedback_token(observation.trace_id, user_id=user, secret=SECRET)
        return {"answer": reply.text, "feedback_token": token}

    api.mount("/api", feedback_app(secret=SECRET, user_id=current_user))
    return api


app = create_app(os.environ.get("LLMD_BASE_URL", "http://127.0.0.1:8000"))


def main() -> None:
    appsdk.configure(service_name="fastapi-chat")
    with (
        sim.running(exporter="appsdk") as simulator,
        sim.serving(create_app(simulator.base_url)) as url,
    ):
        answer = httpx.post(
            f"{url}/chat", json={"question": "What is llm-d?"}, headers={"x-user": "ana"}
        ).json()
        rated = httpx.post(
            f"{url}/api/feedback",
            headers={"x-user": "ana"},
            json={
                "token": answer["feedback_token"],
                "name": "helpful",
                "value": True,
            },
        )
        stolen = httpx.post(
            f"{url}/api/feedback",
            headers={"x-user": "mallory"},
            json={
                "token": answer["feedback_token"],
                "name": "helpful",
                "value": False,
            },
        )
    default_client().flush(10)
    appsdk.shutdown()
    print(f"answer: {answer['answer']}")
    print(
        f"rating by the user: HTTP {rated.status_code}; by someone else: HTTP {stolen.status_code}"
    )


if __name__ == "__main__":
    main()
