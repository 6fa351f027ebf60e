import os
import struct
from pathlib import Path

import pytest

from trackstream.producer.spool import (
    DELIVERED_NAME,
    HEADER_SIZE,
    DiskSpool,
    SpoolCorrupt,
    SpoolFull,
    SpoolLocked,
)
from trackstream.errors import DeliveryError


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def read_all(spool: DiskSpool, start: int = 0) -> list[tuple[int, bytes, bytes]]:
    out = []
    position = start
    while True:
        batch = spool.read_from(position, max_records=7)
        if not batch:
            return out
        out.extend(batch)
        position = batch[-1][0] + 1


def fill(spool: DiskSpool, n: int, size: int = 100) -> list[tuple[bytes, bytes]]:
    records = [(f"run-{i % 3}".encode(), f"{i:06d}".encode() * (size // 6)) for i in range(n)]
    for i, (key, payload) in enumerate(records):
        assert spool.append(key, payload) == i
    return records


def test_positions_and_order_survive_segment_rolls_and_reopen(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = DiskSpool(directory, segment_bytes=4096)
    records = fill(spool, 300)
    assert len(segments(directory)) > 5
    assert [(k, p) for _, k, p in read_all(spool)] == records
    assert [pos for pos, _, _ in read_all(spool, 123)] == list(range(123, 300))
    assert spool.pending_count == 300 and spool.delivered_position == -1
    spool.close()

    reopened = DiskSpool(directory, segment_bytes=4096)
    assert reopened.next_position == 300
    assert [(k, p) for _, k, p in read_all(reopened, 0)] == records
    assert reopened.append(b"k", b"after") == 300
    assert reopened.read_from(300) == [(300, b"k", b"after")]
    reopened.close()


def test_read_from_respects_limits_and_returns_oversized_record_alone(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "s")
    spool.append(b"a", b"x" * 5000)
    spool.append(b"a", b"y" * 10)
    assert [p for p, _, _ in spool.read_from(0, max_bytes=100)] == [0]
    assert [p for p, _, _ in spool.read_from(0, max_records=1)] == [0]
    assert [p for p, _, _ in spool.read_from(0)] == [0, 1]
    assert spool.read_from(2) == []
    spool.close()


@pytest.mark.parametrize("garbage", [b"\x07", b"\x10\x00\x00\x00\xde\xad", b"\x05\x00\x00\x00" + b"\0" * 20])
def test_torn_tail_is_truncated_on_reopen_and_earlier_records_survive(tmp_path: Path, garbage: bytes) -> None:
    directory = tmp_path / "spool"
    spool = DiskSpool(directory)
    records = fill(spool, 10)
    spool.close()
    last = segments(directory)[-1]
    good_size = last.stat().st_size
    with open(last, "ab") as f:
        f.write(garbage)

    reopened = DiskSpool(directory)
    assert last.stat().st_size == good_size
    assert [(k, p) for _, k, p in read_all(reopened)] == records
    assert reopened.append(b"k", b"next") == 10
    reopened.close()
    assert [p for _, _, p in read_all(DiskSpool(directory))][-1] == b"next"


def test_half_written_last_record_is_dropped(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = DiskSpool(directory)
    fill(spool, 5)
    spool.close()
    last = segments(directory)[-1]
    size = last.stat().st_size
    os.truncate(last, size - 30)

    reopened = DiskSpool(directory)
    assert reopened.next_position == 4
    assert [p for p, _, _ in read_all(reopened)] == [0, 1, 2, 3]
    reopened.close()


def test_crc_mismatch_in_the_last_segment_truncates_from_the_bad_record(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = DiskSpool(directory)
    fill(spool, 5, size=60)
    spool.close()
    last = segments(directory)[-1]
    record_size = last.stat().st_size // 5
    data = bytearray(last.read_bytes())
    data[3 * record_size + HEADER_SIZE + 10] ^= 0xFF
    last.write_bytes(bytes(data))

    reopened = DiskSpool(directory)
    assert [p for p, _, _ in read_all(reopened)] == [0, 1, 2]
    reopened.close()


def test_crc_mismatch_in_an_older_segment_is_reported_with_where_to_resume(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = DiskSpool(directory, segment_bytes=2048)
    fill(spool, 100)
    spool.close()
    first = segments(directory)[0]
    second_start = int(segments(directory)[1].stem)
    data = bytearray(first.read_bytes())
    data[-5] ^= 0xFF
    first.write_bytes(bytes(data))

    reopened = DiskSpool(directory, segment_bytes=2048)
    assert len(reopened.read_from(0, max_records=second_start - 1)) == second_start - 1
    with pytest.raises(SpoolCorrupt) as info:
        reopened.read_from(0, max_records=1000)
    assert info.value.position == second_start - 1
    assert info.value.resume_position == second_start
    assert reopened.read_from(second_start)[0][0] == second_start
    reopened.close()


def test_delivered_cursor_persists_and_fully_delivered_segments_are_deleted(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = DiskSpool(directory, segment_bytes=4096)
    fill(spool, 200)
    before = segments(directory)
    second_start = int(before[1].stem)
    spool.mark_delivered(second_start)
    after = segments(directory)
    assert before[0] not in after and before[1] in after
    assert (directory / DELIVERED_NAME).read_text().strip() == str(second_start)
    assert spool.pending_count == 200 - second_start - 1
    spool.mark_delivered(5)  # going backwards is a no-op
    assert spool.delivered_position == second_start
    with pytest.raises(ValueError):
        spool.mark_delivered(200)
    spool.close()

    reopened = DiskSpool(directory, segment_bytes=4096)
    assert reopened.delivered_position == second_start
    assert reopened.pending_count == 200 - second_start - 1
    assert read_all(reopened, second_start + 1)[0][0] == second_start + 1
    reopened.mark_delivered(199)
    assert reopened.pending_count == 0
    assert reopened.append(b"k", b"v") == 200
    assert reopened.close(remove_if_delivered=True) is False
    assert directory.exists()


def test_fully_delivered_spool_is_removed_on_close_and_numbering_continues_after_reopen(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = DiskSpool(directory, segment_bytes=4096)
    fill(spool, 50)
    spool.mark_delivered(49)
    spool.close()
    reopened = DiskSpool(directory, segment_bytes=4096)
    assert segments(directory) == []
    assert reopened.next_position == 50 and reopened.pending_count == 0
    assert reopened.close(remove_if_delivered=True) is True
    assert not directory.exists()


def test_cursor_beyond_the_surviving_records_never_reuses_positions(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = DiskSpool(directory)
    fill(spool, 5)
    spool.close()
    (directory / DELIVERED_NAME).write_text("9\n")
    reopened = DiskSpool(directory)
    assert reopened.pending_count == 0
    assert reopened.append(b"k", b"v") == 10
    assert reopened.read_from(10) == [(10, b"k", b"v")]
    reopened.close()


def test_lock_keeps_a_second_opener_out(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    assert not DiskSpool.is_locked(directory)
    spool = DiskSpool(directory)
    assert DiskSpool.is_locked(directory)
    with pytest.raises(SpoolLocked):
        DiskSpool(directory)
    spool.close()
    assert not DiskSpool.is_locked(directory)
    DiskSpool(directory).close()


def test_new_spool_appears_only_once_locked_with_its_metadata(tmp_path: Path) -> None:
    directory = tmp_path / "root" / "w1"
    spool = DiskSpool(directory, metadata={"topic": "events"})
    assert DiskSpool.read_metadata(directory) == {"topic": "events"}
    assert [p.name for p in directory.parent.iterdir()] == ["w1"]
    spool.close()


def test_bounded_spool_raises_spool_full_until_delivery_frees_a_segment(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "s", max_bytes=64 * 1024, segment_bytes=8 * 1024)
    payload = b"p" * 1000
    appended = 0
    with pytest.raises(SpoolFull) as info:
        while True:
            spool.append(b"key", payload)
            appended += 1
    assert isinstance(info.value, DeliveryError)
    assert spool.size_bytes <= 64 * 1024
    assert "full" in str(info.value)
    spool.mark_delivered(appended - 1)
    assert spool.size_bytes < 16 * 1024
    assert spool.append(b"key", payload) == appended
    spool.close()


def test_record_framing_is_length_crc_keylen_key_payload(tmp_path: Path) -> None:
    directory = tmp_path / "s"
    spool = DiskSpool(directory)
    spool.append(b"ab", b"xyz")
    spool.close()
    raw = segments(directory)[0].read_bytes()
    length, _crc, key_len = struct.unpack_from("<III", raw)
    assert (length, key_len) == (5, 2)
    assert raw[HEADER_SIZE:] == b"abxyz"


def test_reads_switch_between_memory_and_disk_and_can_rewind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trackstream.producer.spool._TAIL_BYTES", 2000)
    spool = DiskSpool(tmp_path / "s", segment_bytes=4096)
    records = fill(spool, 120)
    assert [(k, p) for _, k, p in read_all(spool)] == records
    assert [(k, p) for _, k, p in read_all(spool, 10)] == records[10:]
    more = [(b"k", f"late-{i}".encode()) for i in range(5)]
    for key, payload in more:
        spool.append(key, payload)
    assert [(k, p) for _, k, p in read_all(spool, 118)] == records[118:] + more
    spool.close()


def test_flushed_records_survive_a_hard_exit_of_the_process(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    pid = os.fork()
    if pid == 0:  # child: append, flush, append more without flushing, die without cleanup
        try:
            spool = DiskSpool(directory)
            for i in range(10):
                spool.append(b"k", b"%d" % i)
            spool.flush()
            for i in range(10, 15):
                spool.append(b"k", b"%d" % i)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    reopened = DiskSpool(directory)
    payloads = [p for _, _, p in read_all(reopened)]
    assert payloads[:10] == [b"%d" % i for i in range(10)]
    assert len(payloads) in (10, 15)
    reopened.close()


# EventWriter with no broker at all: nothing below needs Kafka to be reachable.
UNREACHABLE = "127.0.0.1:1"


def params(run_id: str, i: int) -> dict:
    return {"run_id": run_id, "params": [{"key": f"p{i}", "value": str(i)}]}


def test_writer_without_a_broker_keeps_events_on_disk_and_says_so(tmp_path: Path) -> None:
    from trackstream.producer.kafka_writer import EventWriter, SpoolWarning
    from trackstream.schemas import default_codec

    spool_dir = tmp_path / "root" / "w"
    writer = EventWriter(UNREACHABLE, "events", spool_dir=spool_dir, writer_id="w")
    for i in range(50):
        writer.append("params_set", params(f"r{i % 2}", i))
    assert writer.flush(0.2) == 50
    with pytest.warns(SpoolWarning, match="trackstream sync"):
        assert writer.close(0.2) == 50
    with pytest.raises(DeliveryError, match="closed"):
        writer.append("params_set", params("r0", 99))

    assert DiskSpool.read_metadata(spool_dir)["topic"] == "events"
    spool = DiskSpool(spool_dir)
    decoded = [(k.decode(), default_codec().decode(p).record["seq"]) for _, k, p in read_all(spool)]
    spool.close()
    assert decoded == [(f"r{i % 2}", i // 2 + 1) for i in range(50)]

    reopened = EventWriter(UNREACHABLE, "events", spool_dir=spool_dir, writer_id="w")
    assert reopened.append("params_set", params("r0", 100))["seq"] == 26
    with pytest.warns(SpoolWarning):
        assert reopened.close(0) == 51


def test_writer_blocks_with_a_warning_when_the_spool_is_full_and_close_releases_it(tmp_path: Path) -> None:
    import threading
    import warnings

    from trackstream.producer.kafka_writer import EventWriter, SpoolWarning

    writer = EventWriter(UNREACHABLE, "events", spool_dir=tmp_path / "w", max_spool_bytes=64 * 1024)
    outcome: list[BaseException] = []

    def log_until_blocked() -> None:
        try:
            for i in range(10_000):
                writer.append("params_set", params("r", i))
        except BaseException as exc:
            outcome.append(exc)

    with warnings.catch_warnings(record=True) as caught:  # one recorder: catch_warnings is process-wide
        warnings.simplefilter("always")
        appender = threading.Thread(target=log_until_blocked)
        appender.start()
        appender.join(timeout=2)
        assert appender.is_alive(), "append should wait for space, not fail or drop"
        pending = writer.close(0.1)
        appender.join(timeout=5)
    assert not appender.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], DeliveryError)
    assert 0 < pending < 10_000
    messages = [str(w.message) for w in caught if issubclass(w.category, SpoolWarning)]
    assert any("is full" in m and "wait" in m for m in messages)
    assert any("trackstream sync" in m for m in messages)


def test_writer_with_a_bad_producer_setting_fails_at_construction_and_leaves_no_spool(tmp_path: Path) -> None:
    from trackstream.producer.kafka_writer import EventWriter

    with pytest.raises(DeliveryError, match="configuration"):
        EventWriter(UNREACHABLE, "events", spool_dir=tmp_path / "w", producer_config={"no.such.setting": 1})
    assert not (tmp_path / "w").exists()


# SpoolShipper against a scripted stand-in for confluent_kafka.Producer.
class FakeProducer:
    def __init__(self, script) -> None:
        self.script = script  # position -> KafkaError | None | "stall"
        self.produced: list[int] = []
        self.waiting: list = []

    def produce(self, topic, value, key, on_delivery) -> None:
        position = int(value)
        self.produced.append(position)
        self.waiting.append((position, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        served, keep = 0, []
        for position, callback in self.waiting:
            outcome = self.script(position)
            if isinstance(outcome, str):  # not ==: KafkaError.__eq__(str) leaves a stray exception set
                keep.append((position, callback))
                continue
            callback(outcome, None)
            served += 1
        self.waiting = keep
        return served

    def list_topics(self, topic, timeout):
        return object()

    def purge(self) -> None:
        self.waiting = []


def shipper_over(tmp_path: Path, scripts: list):
    from trackstream.producer.kafka_writer import SpoolShipper

    producers: list[FakeProducer] = []

    class ScriptedShipper(SpoolShipper):
        def _new_producer(self):
            producers.append(FakeProducer(scripts[min(len(producers), len(scripts) - 1)]))
            return producers[-1]

    spool = DiskSpool(tmp_path / "s")
    for i in range(6):
        spool.append(f"k{i % 2}".encode(), str(i).encode())
    return ScriptedShipper(spool, UNREACHABLE, "events"), producers, spool


def run_until_delivered(shipper, seconds: float = 5) -> None:
    import time

    deadline = time.monotonic() + seconds
    while shipper.pending and time.monotonic() < deadline:
        shipper.step()


def test_shipper_rewinds_to_the_first_undelivered_record_on_a_new_producer_after_a_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from confluent_kafka import KafkaError

    monkeypatch.setattr("trackstream.producer.kafka_writer.BACKOFF_INITIAL_S", 0.01)
    failing = lambda p: KafkaError(KafkaError._TRANSPORT) if p == 2 else None  # noqa: E731
    shipper, producers, spool = shipper_over(tmp_path, [failing, lambda p: None])
    run_until_delivered(shipper)
    assert shipper.pending == 0 and len(producers) == 2
    assert producers[0].produced == [0, 1, 2, 3, 4, 5]
    assert producers[1].produced == [2, 3, 4, 5]  # 3..5 were acked before, re-sent anyway: order over savings
    shipper.close()
    assert spool.delivered_position == 5
    spool.close()


def test_shipper_skips_and_reports_an_undeliverable_record(tmp_path: Path) -> None:
    from confluent_kafka import KafkaError

    too_large = lambda p: KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if p == 1 else None  # noqa: E731
    shipper, producers, spool = shipper_over(tmp_path, [too_large])
    run_until_delivered(shipper)
    assert shipper.pending == 0 and len(producers) == 1
    assert shipper.delivered_count == 5
    errors = shipper.take_errors()
    assert len(errors) == 1 and "position 1" in errors[0] and "MSG_SIZE_TOO_LARGE" in errors[0]
    shipper.close()
    spool.close()


def test_shipper_replaces_a_producer_that_stops_reporting_while_the_broker_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trackstream.producer.kafka_writer.STALL_S", 0.2)
    monkeypatch.setattr("trackstream.producer.kafka_writer.PROBE_S", 0.05)
    monkeypatch.setattr("trackstream.producer.kafka_writer.BACKOFF_INITIAL_S", 0.01)
    stalls_after_two = lambda p: "stall" if p >= 2 else None  # noqa: E731
    shipper, producers, spool = shipper_over(tmp_path, [stalls_after_two, lambda p: None])
    run_until_delivered(shipper)
    assert shipper.pending == 0 and len(producers) == 2
    assert producers[1].produced == [2, 3, 4, 5]
    shipper.close()
    spool.close()


def test_only_spool_directories_count_as_leftover_spools(tmp_path):
    """A writer given an explicit spool directory treats its siblings as leftover spools to deliver
    and remove: a sibling that is not a spool (someone's data) must never be opened, let alone removed."""
    from trackstream.producer.kafka_writer import _has_other_spools
    from trackstream.producer.sync import spool_dirs

    own = tmp_path / "spool"
    data = tmp_path / "clickhouse-data"
    (data / "store").mkdir(parents=True)
    (data / "store" / "part.bin").write_bytes(b"x")
    DiskSpool(own, metadata={"topic": "t"}).close()
    assert spool_dirs(tmp_path) == [own]
    assert not _has_other_spools(own)

    leftover = DiskSpool(tmp_path / "leftover", metadata={"topic": "t"})
    leftover.close()
    assert set(spool_dirs(tmp_path)) == {own, tmp_path / "leftover"}
    assert _has_other_spools(own)
    assert (data / "store" / "part.bin").read_bytes() == b"x"
