"""Moments users type: Unix ms or ISO 8601, and what is refused."""

from __future__ import annotations

import pytest

from trackstream.errors import InvalidInput
from trackstream.moments import parse_moment


def test_unix_ms_and_iso_times_name_the_same_moment():
    assert parse_moment("1764633600000") == parse_moment("2025-12-02T00:00") == parse_moment("2025-12-02T01:00+01:00")


@pytest.mark.parametrize("text, says", [("yesterday", "neither Unix milliseconds"),
                                         ("9" * 30, "too large for Unix milliseconds")])
def test_what_is_not_a_moment_is_refused_naming_the_parameter(text, says):
    with pytest.raises(InvalidInput, match=f"as_of .*{says}"):
        parse_moment(text, "as_of")
