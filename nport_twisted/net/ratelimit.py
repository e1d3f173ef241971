# -*- test-case-name: tests.test_discovery -*-
"""
Token buckets per key on a clock the caller reads (time passed in, so the
class is pure): the DSCI responder's per-source and overall reply rates,
and anything else that must not answer or log without bound.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["RateLimiter"]


class RateLimiter:
    """
    Token buckets per key (source IP) on the injected clock: C{rate} tokens
    a second, at most C{burst}.  At most C{max_keys} buckets are kept; when
    full, the least recently used one is forgotten (it starts again full,
    which only ever errs towards answering).
    """

    def __init__(self, rate: float = 20.0, burst: float = 40.0, max_keys: int = 1024) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate > 0, burst >= 1 and max_keys >= 1 are required")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float) -> bool:
        """Take one token for C{key}; False when its bucket is empty."""
        bucket = self._buckets.get(key)
        if bucket is None:
            while len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = [self.burst, now]
        else:
            self._buckets.move_to_end(key)
            tokens, stamp = bucket
            bucket[0] = min(self.burst, tokens + max(0.0, now - stamp) * self.rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return True
        return False

    def level(self, key: str, now: float) -> float:
        """The tokens C{key} would have at C{now} (C{burst} for an unknown key); nothing taken."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.burst
        return min(self.burst, bucket[0] + max(0.0, now - bucket[1]) * self.rate)

    def charge(self, key: str, cost: float) -> None:
        """
        Take C{cost} more tokens from C{key}'s bucket, after the fact (work
        whose cost was known only once done).  The bucket may go below zero:
        L{allow} refuses until the debt is paid back at C{rate}.
        """
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket[0] -= cost
