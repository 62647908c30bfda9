"""The feedback record: validated at the edge, with a deterministic score id."""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["MAX_COMMENT_CHARS", "Feedback", "ScoreDataType", "check_ids", "score_id"]

ScoreDataType = Literal["NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT"]
MAX_COMMENT_CHARS = 2000
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
# What OpenTelemetry reports outside a trace (before configure(), a non-recording span).
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16


def score_id(trace_id: str, observation_id: str | None, name: str, user_id: str | None) -> str:
    """The same feedback identity always gives the same id, so a resend upserts."""
    identity = "\x1f".join((trace_id, observation_id or "", name, user_id or ""))
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


class Feedback(BaseModel):
    """One end-user rating of a trace (or one observation in it), as a Langfuse score.

    ``data_type`` is inferred from ``value`` (bool: BOOLEAN, number: NUMERIC, str:
    CATEGORICAL) or checked against it when given (TEXT takes a str).

    Example:
        >>> Feedback(trace_id="ab" * 16, name="helpful", value=True).data_type
        'BOOLEAN'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    trace_id: str
    observation_id: str | None = None
    name: str = Field(min_length=1, max_length=200)
    value: bool | float | str
    data_type: ScoreDataType | None = None
    comment: str | None = Field(default=None, max_length=MAX_COMMENT_CHARS)
    user_id: str | None = Field(default=None, max_length=200)
    session_id: str | None = Field(default=None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("trace_id")
    @classmethod
    def _trace_id(cls, value: str) -> str:
        return _valid_trace_id(value)

    @field_validator("observation_id")
    @classmethod
    def _observation_id(cls, value: str | None) -> str | None:
        return _valid_observation_id(value) if value is not None else None

    @field_validator("value", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        if (isinstance(value, float) and value != value) or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number, a bool or a string")
        if isinstance(value, str) and len(value) > 500:
            raise ValueError("a categorical or text value has at most 500 characters")
        return value

    @model_validator(mode="after")
    def _data_type_matches_value(self) -> Feedback:
        inferred: ScoreDataType = (
            "BOOLEAN"
            if isinstance(self.value, bool)
            else "NUMERIC"
            if isinstance(self.value, int | float)
            else "CATEGORICAL"
        )
        given = self.data_type
        if given is None:
            object.__setattr__(self, "data_type", inferred)
        elif given == "TEXT" and inferred == "CATEGORICAL":
            pass
        elif given != inferred:
            raise ValueError(
                f"data_type {given} does not fit value {self.value!r} (that is {inferred})"
            )
        return self

    @property
    def id(self) -> str:
        return score_id(self.trace_id, self.observation_id, self.name, self.user_id)

    def to_score(self, timestamp: datetime.datetime, comment: str | None) -> dict[str, Any]:
        """The Langfuse scores-API item (camelCase, as the API takes it)."""
        value: Any = self.value
        if self.data_type == "BOOLEAN":
            value = 1 if self.value else 0
        item: dict[str, Any] = {
            "id": self.id,
            "traceId": self.trace_id,
            "name": self.name,
            "value": value,
            "dataType": self.data_type,
            "timestamp": timestamp.isoformat(),
        }
        optional = {
            "observationId": self.observation_id,
            "sessionId": self.session_id,
            "comment": comment,
            "metadata": self.metadata or None,
        }
        item.update({k: v for k, v in optional.items() if v is not None})
        return item


def _valid_trace_id(value: str) -> str:
    if not isinstance(value, str) or not _TRACE_ID.match(value):
        raise ValueError("must be 32 lowercase hex characters (appsdk.get_current_trace_id())")
    if value == _INVALID_TRACE_ID:
        raise ValueError(
            "is the all-zero id of no trace: rate a trace that was recorded "
            "(call appsdk.configure() before the traced code runs)"
        )
    return value


def _valid_observation_id(value: str) -> str:
    if not isinstance(value, str) or not _SPAN_ID.match(value):
        raise ValueError("must be 16 lowercase hex characters (an observation id)")
    if value == _INVALID_SPAN_ID:
        raise ValueError("is the all-zero id of no observation")
    return value


def check_ids(trace_id: str, observation_id: str | None) -> None:
    """Raise ``ValueError`` naming the field unless the ids can be those of a recorded trace."""
    try:
        _valid_trace_id(trace_id)
    except ValueError as exc:
        raise ValueError(f"trace_id {exc}") from None
    if observation_id is not None:
        try:
            _valid_observation_id(observation_id)
        except ValueError as exc:
            raise ValueError(f"observation_id {exc}") from None
