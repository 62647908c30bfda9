"""Framework integrations: the feedback endpoint as an ASGI app (needs ``appsdk[sim]``)."""

from appsdk.integrations.feedback_app import feedback_app

__all__ = ["feedback_app"]
