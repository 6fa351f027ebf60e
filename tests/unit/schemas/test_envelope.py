"""schemas.envelope.WriterIdentity: the stored-event envelope and per-aggregate sequences."""

from __future__ import annotations

import threading

from trackstream.schemas.envelope import WriterIdentity

RUN_A, RUN_B = "a" * 32, "b" * 32


def test_stamp_numbers_each_aggregate_from_one_and_fills_the_envelope() -> None:
    identity = WriterIdentity("writer-1")
    seqs = [identity.stamp("tags_set", {"run_id": run, "tags": []})[1]["seq"] for run in (RUN_A, RUN_A, RUN_B)]
    agg, record = identity.stamp("run_deleted", {"run_id": RUN_B})

    assert seqs == [1, 2, 1] and agg == RUN_B and record["seq"] == 2
    assert record["writer_id"] == "writer-1" and record["run_id"] == RUN_B
    assert len(record["event_id"]) == 32 and record["timestamp_ms"] > 1_700_000_000_000


def test_next_record_takes_no_number_until_advance_says_the_event_was_stored() -> None:
    identity = WriterIdentity()
    _, first = identity.next_record("run_deleted", {"run_id": RUN_A})
    _, retry = identity.next_record("run_deleted", {"run_id": RUN_A})  # the first append failed
    assert first["seq"] == retry["seq"] == 1 and first["event_id"] != retry["event_id"]

    identity.advance(RUN_A, retry["seq"])
    identity.advance(RUN_A, 0)  # never moves back
    assert identity.next_record("run_deleted", {"run_id": RUN_A})[1]["seq"] == 2


def test_advance_continues_sequences_found_in_an_earlier_spool() -> None:
    identity = WriterIdentity("w")
    identity.advance(RUN_A, 41)
    assert identity.stamp("run_deleted", {"run_id": RUN_A})[1]["seq"] == 42


def test_concurrent_stamps_never_share_a_sequence_number() -> None:
    identity = WriterIdentity()
    seen: list[int] = []

    def stamp_many() -> None:
        for _ in range(500):
            seen.append(identity.stamp("run_deleted", {"run_id": RUN_A})[1]["seq"])

    threads = [threading.Thread(target=stamp_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 2001))
