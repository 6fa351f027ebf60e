"""The deduplication token of one insert names its events' (partition, offset) spans (consumers/store.py)."""

from __future__ import annotations

import numpy as np

from trackstream.consumers.store import insert_settings


def token(table, partitions, offsets):
    return insert_settings(table, np.array(partitions), np.array(offsets))["insert_deduplication_token"]


def test_a_resent_insert_carries_the_same_token_whatever_its_row_order():
    assert token("metrics", [0, 0, 1, 1], [5, 6, 9, 9]) == token("metrics", [1, 0, 1, 0], [9, 6, 9, 5])


def test_other_events_other_tables_or_other_row_counts_get_other_tokens():
    base = token("metrics", [0, 0, 1], [5, 6, 9])
    assert base != token("metrics", [0, 0, 1], [5, 7, 9])
    assert base != token("metrics", [0, 0, 2], [5, 6, 9])
    assert base != token("params", [0, 0, 1], [5, 6, 9])
    assert base != token("metrics", [0, 0, 1, 1], [5, 6, 9, 9])


def test_every_insert_is_one_block_with_deduplication_on():
    settings = insert_settings("tags", [3], [42])
    assert settings["insert_deduplicate"] == 1
    assert settings["max_insert_block_size"] >= 100_000_000
