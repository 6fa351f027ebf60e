"""Password checks (basic credentials, ~60 ms of scrypt each) off the event loop, bounded and
rate-limited, so a flood of guesses can neither stall the loop nor buy unlimited CPU.

* Credentials that need no slow hash (bearer tokens, basic credentials already verified) are
  answered at once and never limited: a signed-in client keeps working during a flood.
* Every other check first takes a token from the failed-attempt buckets of the client address and
  of the user the credentials name, if that user exists (``server/login_limits.py``); an empty
  bucket is a 429 REQUEST_LIMIT_EXCEEDED with Retry-After, without hashing anything. A right
  password gives the tokens back, so only failures cost.
* Checks run on their own ``threads``; at most ``queue`` more wait for one. Beyond that the
  request gets a 503 TEMPORARILY_UNAVAILABLE with Retry-After at once.

The limiter is touched only from the event loop's thread, so it needs no lock.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from trackstream.errors import Overloaded, TooManyRequests, Unauthenticated
from trackstream.server.login_limits import FailureLimiter

if TYPE_CHECKING:
    from trackstream.config import Settings
    from trackstream.server.auth import AuthConfig, User

BUSY_RETRY_AFTER_S = 1.0


class PasswordChecks:
    def __init__(self, config: "AuthConfig", limiter: FailureLimiter, threads: int, queue: int) -> None:
        self.config = config
        self.limiter = limiter
        self.room = threads + queue
        self.in_flight = 0
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="password-check")

    @classmethod
    def of(cls, config: "AuthConfig", settings: "Settings") -> "PasswordChecks":
        """Limits, threads and queue from the settings (``TRACKSTREAM_AUTH_*``)."""
        limiter = FailureLimiter(settings.auth_failure_burst, settings.auth_failures_per_minute)
        return cls(config, limiter, settings.auth_threads, settings.auth_queue)

    async def authenticate(self, authorization: str | None, address: str | None) -> "User":
        """The user ``authorization`` proves; TooManyRequests, Overloaded or Unauthenticated otherwise."""
        if self.config.is_quick(authorization):
            return self.config.authenticate(authorization)
        keys: list[tuple[str, str]] = [("address", address or "unknown")]
        claimed = self.config.claimed_user(authorization)
        if claimed is not None:
            keys.append(("user", claimed))
        wait = self.limiter.take(keys)
        if wait > 0:
            raise TooManyRequests(f"Too many failed sign-ins from this address or for this user; "
                                  f"retry in {math.ceil(wait)} s", wait)
        if self.in_flight >= self.room:
            self.limiter.give_back(keys)
            raise Overloaded("Too many sign-ins are being checked right now; retry shortly", BUSY_RETRY_AFTER_S)
        self.in_flight += 1
        try:
            user = await asyncio.get_running_loop().run_in_executor(self._pool, self.config.authenticate,
                                                                    authorization)
        except Unauthenticated:
            raise  # a failure: its tokens stay taken
        except BaseException:
            self.limiter.give_back(keys)
            raise
        finally:
            self.in_flight -= 1
        self.limiter.give_back(keys)
        return user

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
