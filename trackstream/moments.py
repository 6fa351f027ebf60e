"""Moments in time as users write them: Unix milliseconds or ISO 8601 (UTC unless a zone is given)."""

from __future__ import annotations

from datetime import datetime, timezone

from trackstream.errors import InvalidInput


def parse_moment(text: str, what: str = "time") -> int:
    """Unix ms for ``text``."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        if int(text) >= 2 ** 63:  # the tables' Int64 milliseconds
            raise InvalidInput(f"{what} {text[:40]!r} is too large for Unix milliseconds")
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise InvalidInput(f"{what} {text!r} is neither Unix milliseconds nor an ISO time like 2026-11-27T12:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)
