import sys
import threading

import numpy as np

from trackstream.producer.metric_buffer import MetricBuffer


def test_points_come_out_columnar_with_a_key_dictionary():
    buf = MetricBuffer()
    buf.add("r1", "loss", 0.5, 1, 100)
    buf.add("r1", "acc", float("nan"), 1, 100)
    buf.add("r1", "loss", 0.25, 2, 101)
    assert buf.pending == 3
    [(run_id, batch)] = buf.drain()
    assert run_id == "r1" and batch.keys == ["loss", "acc"]
    assert batch.key_index.tolist() == [0, 0, 1] and batch.steps.tolist() == [1, 2, 1]  # grouped by key
    assert batch.values[:2].tolist() == [0.5, 0.25] and np.isnan(batch.values[2])
    assert batch.timestamps.tolist() == [100, 101, 100] and buf.pending == 0
    assert buf.drain() == []


def test_full_buffer_is_reported_and_split_into_max_sized_batches():
    buf = MetricBuffer(max_points=3)
    assert [buf.add("r", "k", 1.0, i, 0) for i in range(4)] == [False, False, True, True]
    assert [len(b) for _, b in buf.drain("r")] == [3, 1]


def test_draining_from_two_threads_while_threads_add_loses_and_duplicates_nothing():
    """Two drainers: the background flusher and a caller's flush() can drain at the same time."""
    buf = MetricBuffer(max_points=10**9)
    per_thread, threads = 20_000, 4
    drained = []
    stop = threading.Event()

    def drainer():
        while not stop.is_set():
            drained.extend(buf.drain())
    def writer(t):
        for i in range(per_thread):
            buf.add("r", f"k{t}", float(i), i, 0)

    drainers = [threading.Thread(target=drainer) for _ in range(2)]
    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so the drainers interleave mid-drain
    try:
        [d.start() for d in drainers]
        [w.start() for w in workers]
        [w.join() for w in workers]
        stop.set()
        [d.join() for d in drainers]
    finally:
        sys.setswitchinterval(interval)
    drained.extend(buf.drain())
    seen = [(b.keys[k], int(s)) for _, b in drained for k, s in zip(b.key_index, b.steps)]
    assert len(seen) == per_thread * threads
    assert set(seen) == {(f"k{t}", i) for t in range(threads) for i in range(per_thread)}


def test_arrays_are_kept_apart_per_key():
    buf = MetricBuffer()
    buf.add_arrays("r", "loss", np.array([1.0, 2.0]), np.array([0, 1]), np.array([5, 6]))
    [(_, batch)] = buf.drain()
    assert batch.keys == ["loss"] and batch.values.tolist() == [1.0, 2.0]


def test_put_back_batches_are_drained_first_and_only_for_their_run():
    buffer = MetricBuffer()
    buffer.add("r1", "loss", 1.0, 1, 10)
    buffer.add("r2", "loss", 5.0, 1, 10)
    taken = buffer.drain()
    buffer.add("r1", "loss", 2.0, 2, 20)
    buffer.put_back(taken)
    assert buffer.pending == 3
    r1 = buffer.drain("r1")
    assert [list(batch.values) for _, batch in r1] == [[1.0], [2.0]]
    assert [(rid, list(batch.values)) for rid, batch in buffer.drain()] == [("r2", [5.0])]
    assert buffer.pending == 0
