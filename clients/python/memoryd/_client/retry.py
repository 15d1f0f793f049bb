"""When a failed call is tried again, and how long to wait first."""

from __future__ import annotations

import random
from dataclasses import dataclass

from memoryd._client.errors import MemorydError, ResourceExhausted, Unavailable


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, for calls that are safe to repeat.

    Attempt ``n`` (1-based) that fails with UNAVAILABLE waits a random time in
    ``[0, min(max_backoff, initial_backoff * multiplier ** (n - 1))]``.
    RESOURCE_EXHAUSTED is retried only when the server sent a
    ``google.rpc.RetryInfo``, after exactly its delay. Nothing else is retried.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must not be negative, multiplier at least 1")

    def delay(self, error: MemorydError, attempt: int) -> float | None:
        """Seconds to wait before retrying after failed ``attempt``; None: give up."""
        if attempt >= self.max_attempts:
            return None
        if isinstance(error, ResourceExhausted):
            if error.retry_delay is None:
                return None
            return error.retry_delay.total_seconds()
        if isinstance(error, Unavailable):
            cap = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
            return random.uniform(0.0, cap)  # noqa: S311 - jitter, not cryptography
        return None
