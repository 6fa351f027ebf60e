"""Settings from the environment: defaults and refused values."""

from __future__ import annotations

import pytest

from trackstream.config import Settings
from trackstream.errors import InvalidInput


def test_batch_window_defaults_to_100_ms_and_follows_the_environment(monkeypatch):
    monkeypatch.delenv("TRACKSTREAM_BATCH_WINDOW_MS", raising=False)
    assert Settings.from_env().batch_window_s == 0.1
    monkeypatch.setenv("TRACKSTREAM_BATCH_WINDOW_MS", "30")
    assert Settings.from_env().batch_window_s == 0.03


@pytest.mark.parametrize("raw", ["0", "-5", "1.5", "fast", "60001"])
def test_a_batch_window_that_is_not_1_to_60000_ms_is_refused_by_name(monkeypatch, raw):
    monkeypatch.setenv("TRACKSTREAM_BATCH_WINDOW_MS", raw)
    with pytest.raises(InvalidInput, match="TRACKSTREAM_BATCH_WINDOW_MS"):
        Settings.from_env()
