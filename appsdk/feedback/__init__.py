"""End-user feedback as Langfuse scores: durable, idempotent and unforgeable."""

from appsdk.feedback.client import (
    FeedbackClient,
    FeedbackValidationError,
    default_client,
    submit_feedback,
)
from appsdk.feedback.model import Feedback, score_id
from appsdk.feedback.tokens import (
    ExpiredFeedbackToken,
    FeedbackGrant,
    FeedbackTokenError,
    ForbiddenFeedbackToken,
    InvalidFeedbackToken,
    issue_feedback_token,
    verify_feedback_token,
)

__all__ = [
    "ExpiredFeedbackToken",
    "Feedback",
    "FeedbackClient",
    "FeedbackGrant",
    "FeedbackTokenError",
    "FeedbackValidationError",
    "ForbiddenFeedbackToken",
    "InvalidFeedbackToken",
    "default_client",
    "issue_feedback_token",
    "score_id",
    "submit_feedback",
    "verify_feedback_token",
]
