"""When to try a failing backend again: capped exponential backoff with jitter and Retry-After.

The exponent is capped before it is computed, so an outage of any length keeps the delay at
its ceiling (``2 ** 1024`` overflows a float: a days-long outage must not turn into a probe
loop). A server's ``Retry-After`` is a floor the delay never goes under.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

__all__ = ["Backoff", "capped_delay", "retry_after_s"]

_MAX_EXPONENT = 30


class Backoff:
    """The state of one backend's failures: how many in a row, and when to probe next.

    Args:
        first_s: the delay after the first failure.
        longest_s: the ceiling of the delay.
        jitter: the fraction of the delay drawn at random (spreads processes that failed
            together).

    Example:
        >>> backoff = Backoff(first_s=0.5, longest_s=30.0)
        >>> backoff.failed(retry_after_s=10.0)
        >>> backoff.down and not backoff.may_probe()
        True
    """

    def __init__(
        self,
        first_s: float = 0.5,
        longest_s: float = 30.0,
        *,
        jitter: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_s, self.longest_s, self.jitter = first_s, longest_s, jitter
        self._clock = clock
        self.failures = 0
        self.until = 0.0
        self._floor = 0.0

    @property
    def down(self) -> bool:
        """True after a failure, until a success."""
        return self.failures > 0

    def delay_s(self) -> float:
        """The delay the next failure would wait (without jitter)."""
        return capped_delay(self.failures, self.first_s, self.longest_s)

    def failed(self, retry_after_s: float | None = None) -> None:
        """Record a failure; ``retry_after_s`` is the server's own word, honoured as a floor."""
        delay = self.delay_s()
        delay *= 1.0 - self.jitter * random.random()
        now = self._clock()
        self.failures += 1
        if retry_after_s is not None and retry_after_s > 0:
            self._floor = now + retry_after_s
            delay = max(delay, retry_after_s)
        self.until = now + delay

    def recovered(self) -> None:
        """Record a success: the backend is up."""
        self.failures = 0
        self.until = 0.0
        self._floor = 0.0

    def may_probe(self) -> bool:
        """True once the delay has passed."""
        return self._clock() >= self.until

    def probe_now(self) -> None:
        """Allow a probe now (an explicit flush), but never before a Retry-After ends."""
        self.until = max(self._floor, self._clock()) if self.down else 0.0

    def wait_s(self) -> float:
        """Seconds until a probe is allowed (0 when it is)."""
        return max(0.0, self.until - self._clock())


def capped_delay(failures: int, first_s: float, longest_s: float) -> float:
    """``first_s`` doubled per failure, at most ``longest_s``, for any number of failures."""
    return min(longest_s, first_s * 2.0 ** min(max(failures, 0), _MAX_EXPONENT))


def retry_after_s(value: str | None, *, cap_s: float = 3600.0) -> float | None:
    """A ``Retry-After`` header in seconds (a number or an HTTP date), at most ``cap_s``.

    None when there is none or it cannot be read; a date in the past is 0.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), cap_s)
