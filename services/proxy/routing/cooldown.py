"""Cooldown of failing deployments, per worker process (LiteLLM's `allowed_fails`,
`cooldown_time`). Pure: time comes from the clock the owner passes in."""

from __future__ import annotations

from collections.abc import Callable

MINUTE_S = 60.0
# A deployment's own trouble, as LiteLLM judges it: a bad key or model name, a timeout, a rate limit,
# a server error. Any other 4xx is the request's fault and says nothing about the deployment.
COUNTED = frozenset({401, 404, 408, 429})


class Cooldowns:
    """A deployment that fails more than `allowed_fails` times within a minute, or is rate limited
    (429), rests for `cooldown_time` seconds: the router skips it while another deployment of its
    group is available. The only deployment of a group never rests (nothing could take over)."""

    def __init__(self, allowed_fails: int, cooldown_time_s: float, clock: Callable[[], float]) -> None:
        self.allowed_fails = allowed_fails
        self.cooldown_time_s = cooldown_time_s
        self._clock = clock
        self._fails: dict[str, tuple[float, int]] = {}  # model_id -> (start of its minute, failures in it)
        self._until: dict[str, float] = {}  # model_id -> end of its rest

    def failed(self, model_id: str, status: int, group_size: int) -> bool:
        """Count one failure; True when the deployment now rests."""
        if group_size < 2 or self.cooldown_time_s <= 0 or not (status in COUNTED or status >= 500):
            return False
        now = self._clock()
        start, count = self._fails.get(model_id, (now, 0))
        if now - start >= MINUTE_S:
            start, count = now, 0
        count += 1
        self._fails[model_id] = (start, count)
        if status == 429 or count > self.allowed_fails:
            self._until[model_id] = now + self.cooldown_time_s
            del self._fails[model_id]
            return True
        return False

    def resting(self, model_id: str) -> bool:
        until = self._until.get(model_id)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._until[model_id]
        return False

    def any_resting(self) -> bool:
        return bool(self._until)
