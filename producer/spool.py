"""DiskSpool: a crash-safe, bounded, append-only log of (key, payload) records on local disk.

The SDK writes every encoded event here first and ships it to Kafka from here, so a broker that
is down at start or goes away mid-run costs nothing but disk space, and a process that exits
while offline leaves its events behind for ``trackstream sync`` (or the next SDK start).

Layout of a spool directory::

    lock                   flock'd by the one process that owns the spool
    meta.json              opaque metadata given by the creator (e.g. the target topic)
    delivered              last delivered position, replaced atomically (tmp + fsync + rename)
    <20 digits>.seg        segments named by the position of their first record

Record framing: ``<u32 body length><u32 crc32><u32 key length><key><payload>``; the CRC covers
the two length fields, the key and the payload. Each record is one ``writev`` straight to the
kernel (no user-space buffer), so a record that ``append`` returned for survives a crash of the
process; ``sync`` (fsync) makes it survive a crash of the machine. A torn or corrupt tail of the
last segment (the only place a crash can leave one) is truncated when the spool is opened.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import logging
import os
import shutil
import struct
import threading
import zlib
from array import array
from collections import deque
from pathlib import Path
from typing import Any, Mapping

from trackstream.errors import DeliveryError

DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_SEGMENT_BYTES = 64 << 20
MIN_SEGMENT_BYTES = 4096

SEGMENT_SUFFIX = ".seg"
LOCK_NAME = "lock"
META_NAME = "meta.json"
DELIVERED_NAME = "delivered"

_HEADER = struct.Struct("<III")
_LENGTHS = struct.Struct("<II")
HEADER_SIZE = _HEADER.size
MAX_RECORD_BODY = (1 << 32) - 1
_INDEX_EVERY = 64
_READ_CHUNK = 1 << 20
_BUFFER_BYTES = 256 << 10
_TAIL_BYTES = 32 << 20
_DIRECT_WRITE_BYTES = 64 << 10

log = logging.getLogger(__name__)


class SpoolError(DeliveryError):
    """The local event spool cannot be used."""


class SpoolLocked(SpoolError):
    """Another process (or another open spool in this process) owns the directory."""


class SpoolFull(SpoolError):
    """Appending would take the spool past its byte bound."""


class SpoolCorrupt(SpoolError):
    """A record inside an already-written segment failed its CRC / framing check.

    ``position`` is the first unreadable record; ``resume_position`` is where readable records
    start again (the next segment), so a reader can skip what cannot be recovered.
    """

    def __init__(self, message: str, position: int, resume_position: int) -> None:
        super().__init__(message)
        self.position = position
        self.resume_position = resume_position


def _crc(length: int, key_len: int, key: bytes, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(key, zlib.crc32(_LENGTHS.pack(length, key_len))))


def _segment_name(start: int) -> str:
    return f"{start:020d}{SEGMENT_SUFFIX}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class _Segment:
    """One segment file: its first position, record count, size and a sparse offset index
    (the byte offset of every ``_INDEX_EVERY``-th record)."""

    __slots__ = ("start", "path", "count", "size", "index", "indexed")

    def __init__(self, start: int, path: Path, *, new: bool = False) -> None:
        self.start = start
        self.path = path
        self.count = 0
        self.size = 0
        self.index = array("q")
        self.indexed = new

    @property
    def end(self) -> int:
        return self.start + self.count


class DiskSpool:
    """Append-only record log with a persisted "delivered up to" cursor.

    Positions are 0-based and monotonic across segments. ``append`` and the reading side
    (``read_from`` / ``mark_delivered``) may run on different threads.
    """

    def __init__(self, directory: Path | str, max_bytes: int = DEFAULT_MAX_BYTES, *,
                 segment_bytes: int | None = None, metadata: Mapping[str, Any] | None = None) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(MIN_SEGMENT_BYTES, min(DEFAULT_SEGMENT_BYTES, max_bytes // 8))
        self._lock = threading.Lock()
        self._io_lock = threading.RLock()
        self._closed = False
        self._broken: str | None = None
        self._lock_fd = self._acquire_directory(metadata)
        try:
            self._segments: list[_Segment] = []
            self._starts: list[int] = []
            self._read_fds: dict[int, int] = {}
            self._write_fd: int | None = None
            self._buffer = bytearray()
            self._tail: deque[tuple[bytes, bytes]] = deque()
            self._tail_bytes = 0
            self._to_sync: list[int] = []
            self._unsynced = False
            self._dir_unsynced = False
            self._recover()
        except BaseException:
            self._release_lock()
            raise

    # opening ---------------------------------------------------------------------------------
    def _acquire_directory(self, metadata: Mapping[str, Any] | None) -> int:
        """Lock the directory; a new one is built under a dot-name and renamed into place while
        locked, so a concurrent ``sync`` never sees (and grabs) a half-created spool."""
        if self.directory.is_dir():
            fd = self._lock_in(self.directory)
            if metadata is not None and not (self.directory / META_NAME).exists():
                _write_atomically(self.directory / META_NAME, json.dumps(dict(metadata)).encode())
            return fd
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        staging = self.directory.with_name(f".{self.directory.name}.creating-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        fd = self._lock_in(staging)
        try:
            if metadata is not None:
                _write_atomically(staging / META_NAME, json.dumps(dict(metadata)).encode())
            os.rename(staging, self.directory)
            _fsync_dir(self.directory.parent)
        except BaseException:
            os.close(fd)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return fd

    @staticmethod
    def _lock_in(directory: Path) -> int:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLocked(f"the event spool {directory} is in use by another process") from None
        return fd

    @staticmethod
    def is_locked(directory: Path | str) -> bool:
        """Whether some process currently owns the spool at ``directory``."""
        try:
            fd = os.open(Path(directory) / LOCK_NAME, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    @staticmethod
    def is_spool_dir(directory: Path | str) -> bool:
        """Whether ``directory`` holds a spool (its metadata, delivered mark or a segment), so that
        whoever looks for leftover spools never opens, let alone removes, anything else."""
        path = Path(directory)
        return (path / META_NAME).exists() or (path / DELIVERED_NAME).exists() or \
            any(path.glob(f"*{SEGMENT_SUFFIX}"))

    @staticmethod
    def read_metadata(directory: Path | str) -> dict[str, Any]:
        try:
            return json.loads((Path(directory) / META_NAME).read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _recover(self) -> None:
        delivered = -1
        with contextlib.suppress(FileNotFoundError, ValueError):
            delivered = int((self.directory / DELIVERED_NAME).read_text().strip())
        starts = sorted(int(p.name[: -len(SEGMENT_SUFFIX)]) for p in self.directory.glob(f"*{SEGMENT_SUFFIX}")
                        if p.name[: -len(SEGMENT_SUFFIX)].isdigit())
        self._segments = [_Segment(s, self.directory / _segment_name(s)) for s in starts]
        for seg, nxt in zip(self._segments, self._segments[1:]):
            seg.count = nxt.start - seg.start
            seg.size = seg.path.stat().st_size
        if self._segments:
            self._scan_tail(self._segments[-1])
            end = self._segments[-1].end
        else:
            end = delivered + 1
        if delivered >= end:
            # The cursor outlived records it covers (e.g. power loss after the cursor was fsync'd
            # but before the segment was): those records were delivered; never reuse positions.
            end = delivered + 1
        self._delivered = max(delivered, (self._segments[0].start - 1) if self._segments else delivered)
        self._next = end
        self._drop_delivered_segments(keep_active_below=0)
        if self._segments and self._segments[-1].end != self._next:
            self._segments.append(_Segment(self._next, self.directory / _segment_name(self._next), new=True))
        self._starts = [s.start for s in self._segments]
        self._size = sum(s.size for s in self._segments)
        if self._segments and self._segments[-1].size < self.segment_bytes:
            self._open_for_append(self._segments[-1])
        self._tail_start = self._next

    def _scan_tail(self, seg: _Segment) -> None:
        """Count, index and verify the last segment; truncate it at the first bad record."""
        fd = os.open(seg.path, os.O_RDWR)
        try:
            file_size = os.fstat(fd).st_size
            offset, count, bad = self._walk(fd, 0, file_size, verify=True, index=seg.index)
            if offset < file_size:
                log.warning("event spool %s: %s at byte %d of %s; dropping the last %d byte(s) "
                            "(a write interrupted by a crash)", self.directory, bad or "torn record",
                            offset, seg.path.name, file_size - offset)
                os.ftruncate(fd, offset)
                os.fsync(fd)
        finally:
            os.close(fd)
        seg.count, seg.size, seg.indexed = count, offset, True

    @staticmethod
    def _walk(fd: int, offset: int, limit: int, *, verify: bool, index: array | None) -> tuple[int, int, str | None]:
        """Step over whole records from ``offset`` (reading in large chunks); returns (offset after
        the last good record, records stepped over, why it stopped early or None)."""
        count = 0
        buf = b""
        buf_at = offset
        while offset < limit:
            rel = offset - buf_at
            if rel + HEADER_SIZE > len(buf):
                buf, buf_at, rel = os.pread(fd, min(_READ_CHUNK, limit - offset), offset), offset, 0
                if len(buf) < HEADER_SIZE:
                    return offset, count, "torn header"
            length, crc, key_len = _HEADER.unpack_from(buf, rel)
            size = HEADER_SIZE + length
            if key_len > length or offset + size > limit:
                return offset, count, "torn or corrupt record"
            if verify:
                if rel + size > len(buf):
                    buf, buf_at, rel = os.pread(fd, max(size, min(_READ_CHUNK, limit - offset)), offset), offset, 0
                    if len(buf) < size:
                        return offset, count, "torn record"
                view = memoryview(buf)[rel + HEADER_SIZE: rel + size]
                if _crc(length, key_len, view[:key_len], view[key_len:]) != crc:
                    return offset, count, "CRC mismatch"
            if index is not None and count % _INDEX_EVERY == 0:
                index.append(offset)
            offset += size
            count += 1
        return offset, count, None

    def _drop_delivered_segments(self, keep_active_below: int) -> None:
        """Delete segments holding only delivered records. The segment being appended to is kept
        while smaller than ``keep_active_below`` bytes, so that a spool which keeps draining does
        not create and delete a file every time it catches up."""
        while self._segments and self._segments[0].end - 1 <= self._delivered:
            seg = self._segments[0]
            active = len(self._segments) == 1
            if active and seg.size < keep_active_below:
                break
            self._segments.pop(0)
            fd = self._read_fds.pop(seg.start, None)
            if fd is not None:
                os.close(fd)
            if active:
                self._buffer.clear()
                self._tail.clear()
                self._tail_bytes = 0
                self._tail_start = self._next
                if self._write_fd is not None:
                    os.close(self._write_fd)
                    self._write_fd = None
            seg.path.unlink(missing_ok=True)
        self._starts = [s.start for s in self._segments]
        self._size = sum(s.size for s in self._segments)

    def _open_for_append(self, seg: _Segment) -> None:
        self._write_fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    # writing ---------------------------------------------------------------------------------
    def append(self, key: bytes, payload: bytes) -> int:
        """Append one record; returns its position. Raises ``SpoolFull`` past ``max_bytes``.

        Small records collect in a user-space buffer that reaches the kernel when it grows past
        ``_BUFFER_BYTES`` or when anything reads, syncs or closes the spool (the sender does that
        within milliseconds), so a hard kill can lose at most those last few milliseconds.
        """
        key_len = len(key)
        length = key_len + len(payload)
        record_size = HEADER_SIZE + length
        if length > MAX_RECORD_BODY:
            raise SpoolError(f"a record of {length} bytes is too large for the event spool")
        header = _HEADER.pack(length, _crc(length, key_len, key, payload), key_len)
        with self._lock:
            if self._closed or self._broken:
                raise SpoolError(self._broken or f"the event spool {self.directory} is closed")
            if self._size + record_size > self.max_bytes:
                raise SpoolFull(f"the event spool {self.directory} is full: {self._size} bytes used, "
                                f"a {record_size}-byte record would exceed the bound of {self.max_bytes} bytes")
            seg = self._segments[-1] if self._segments else None
            if seg is None or self._write_fd is None or seg.size + record_size > self.segment_bytes and seg.count:
                seg = self._roll()
            if record_size >= _DIRECT_WRITE_BYTES:
                self._flush_buffer()
                self._write_all((header, key, payload))
            else:
                buf = self._buffer
                buf += header
                buf += key
                buf += payload
                if len(buf) >= _BUFFER_BYTES:
                    self._flush_buffer()
            if seg.count % _INDEX_EVERY == 0:
                seg.index.append(seg.size)
            tail = self._tail
            tail.append((key, payload))
            self._tail_bytes += record_size
            if self._tail_bytes > _TAIL_BYTES:
                self._forget(1)
            seg.size += record_size
            seg.count += 1
            self._size += record_size
            self._unsynced = True
            position = self._next
            self._next = position + 1
        return position

    def _write_all(self, parts: tuple[bytes, ...] | list[bytes]) -> None:
        total = sum(len(p) for p in parts)
        try:
            written = os.writev(self._write_fd, parts)
        except OSError as exc:
            self._fail(f"writing to {self.directory} failed: {exc}")
        if written != total:
            self._fail(f"short write to {self.directory} ({written} of {total} bytes): is the disk full?")

    def _fail(self, message: str) -> None:
        """A write the file may hold only part of: stop accepting appends rather than number
        records that are not on disk (a reopen truncates the torn tail)."""
        self._broken = message
        raise SpoolError(message)

    def _flush_buffer(self) -> None:
        if self._buffer:
            try:
                self._write_all((self._buffer,))
            finally:
                self._buffer.clear()

    def _roll(self) -> _Segment:
        """Start a new segment at the next position. The old one is fsync'd by the next ``sync``
        (not here, to keep appends cheap); a machine crash before that shows up as a corrupt
        segment when it is read."""
        if self._write_fd is not None:
            self._flush_buffer()
            self._to_sync.append(self._write_fd)
            self._write_fd = None
        if self._segments and self._segments[-1].count == 0:
            seg = self._segments[-1]
        else:
            seg = _Segment(self._next, self.directory / _segment_name(self._next), new=True)
            self._segments.append(seg)
            self._starts.append(seg.start)
        self._open_for_append(seg)
        self._dir_unsynced = True
        return seg

    def flush(self) -> None:
        """Hand buffered records to the kernel (they then survive a crash of this process)."""
        with self._lock:
            self._flush_buffer()

    def sync(self) -> None:
        """Flush and fsync everything appended so far (it then survives a machine crash). The
        fsyncs run outside the append lock so that appends do not wait for the disk."""
        with self._lock:
            self._flush_buffer()
            fds, self._to_sync = self._to_sync, []
            if self._unsynced and self._write_fd is not None:
                fds.append(os.dup(self._write_fd))
            sync_dir, self._dir_unsynced = self._dir_unsynced, False
            self._unsynced = False
        for fd in fds:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if sync_dir:
            _fsync_dir(self.directory)

    # reading ---------------------------------------------------------------------------------
    def read_from(self, position: int, max_records: int = 1000,
                  max_bytes: int = 16 << 20) -> list[tuple[int, bytes, bytes]]:
        """Up to ``max_records`` records from ``position`` on, in order, as (position, key, payload).

        May return fewer (e.g. at the end of a segment), so callers loop; at least one record is returned if any
        exists at ``position`` even when it alone exceeds ``max_bytes``. Records appended since the
        last read are served from memory (and forgotten there once read); older ones from disk.
        """
        with self._io_lock:
            with self._lock:
                if self._tail and position >= self._tail_start:
                    return self._take_tail(position, max_records, max_bytes)
                self._flush_buffer()
                if position < self._delivered + 1 and not self._segments:
                    return []
                if self._segments and position < self._segments[0].start:
                    raise SpoolError(f"position {position} was already delivered and deleted from {self.directory}")
                if position >= self._next:
                    return []
                i = bisect.bisect_right(self._starts, position) - 1
                seg = self._segments[i]
                limit, last_pos = seg.size, seg.end
            fd = self._read_fd(seg)
            if not seg.indexed:
                self._index_segment(seg, fd)
            rel = position - seg.start
            slot = min(rel // _INDEX_EVERY, len(seg.index) - 1)
            offset = seg.index[slot]
            skip = rel - slot * _INDEX_EVERY
            return self._read_records(fd, seg, offset, limit, seg.start + slot * _INDEX_EVERY, skip,
                                      min(max_records, last_pos - position), max_bytes)

    def _take_tail(self, position: int, max_records: int, max_bytes: int) -> list[tuple[int, bytes, bytes]]:
        tail = self._tail
        while tail and self._tail_start < position:
            self._forget(1)
        count = total = 0
        for key, payload in tail:
            size = len(key) + len(payload)
            if count and (count >= max_records or total + size > max_bytes):
                break
            count += 1
            total += size
        start = self._tail_start
        popleft = tail.popleft
        out = [(pos, *popleft()) for pos in range(start, start + count)]
        self._tail_bytes -= total + count * HEADER_SIZE
        self._tail_start = start + count
        return out

    def _forget(self, count: int) -> None:
        for _ in range(count):
            key, payload = self._tail.popleft()
            self._tail_bytes -= HEADER_SIZE + len(key) + len(payload)
            self._tail_start += 1

    def _read_fd(self, seg: _Segment) -> int:
        fd = self._read_fds.get(seg.start)
        if fd is None:
            fd = self._read_fds[seg.start] = os.open(seg.path, os.O_RDONLY)
        return fd

    def _index_segment(self, seg: _Segment, fd: int) -> None:
        index = array("q")
        offset, count, _ = self._walk(fd, 0, seg.size, verify=False, index=index)
        if count < seg.count:
            self._corrupt(seg, seg.start + count, "torn or corrupt record")
        seg.index, seg.indexed = index, True

    def _corrupt(self, seg: _Segment, position: int, why: str) -> None:
        raise SpoolCorrupt(f"event spool {self.directory}: {why} in {seg.path.name} at position {position}; "
                           f"records {position}..{seg.end - 1} cannot be read", position, seg.end)

    def _read_records(self, fd: int, seg: _Segment, offset: int, limit: int, position: int, skip: int,
                      max_records: int, max_bytes: int) -> list[tuple[int, bytes, bytes]]:
        out: list[tuple[int, bytes, bytes]] = []
        total = 0
        buf = b""
        buf_at = offset
        while len(out) < max_records and offset < limit:
            rel = offset - buf_at
            if rel + HEADER_SIZE > len(buf):
                buf = os.pread(fd, min(_READ_CHUNK, limit - offset), offset)
                buf_at, rel = offset, 0
                if len(buf) < HEADER_SIZE:
                    self._corrupt(seg, position, "torn header")
            length, crc, key_len = _HEADER.unpack_from(buf, rel)
            size = HEADER_SIZE + length
            if key_len > length or offset + size > limit:
                self._corrupt(seg, position, "corrupt record framing")
            if skip:
                skip -= 1
            else:
                if out and total + length > max_bytes:
                    break
                if rel + size > len(buf):
                    buf = os.pread(fd, max(size, min(_READ_CHUNK, limit - offset)), offset)
                    buf_at, rel = offset, 0
                    if len(buf) < size:
                        self._corrupt(seg, position, "torn record")
                view = memoryview(buf)[rel + HEADER_SIZE: rel + size]
                key, payload = view[:key_len], view[key_len:]
                if _crc(length, key_len, key, payload) != crc:
                    self._corrupt(seg, position, "CRC mismatch")
                out.append((position, key.tobytes(), payload.tobytes()))
                total += length
            offset += size
            position += 1
        return out

    # delivery cursor -------------------------------------------------------------------------
    @property
    def delivered_position(self) -> int:
        """Every record at or below this position was delivered (-1: none yet)."""
        return self._delivered

    @property
    def next_position(self) -> int:
        """The position the next ``append`` will get."""
        return self._next

    @property
    def pending_count(self) -> int:
        return self._next - 1 - self._delivered

    @property
    def size_bytes(self) -> int:
        return self._size

    def mark_delivered(self, position: int) -> None:
        """Record that everything up to ``position`` is delivered (persisted, fsync'd); deletes
        segments that hold only delivered records."""
        with self._io_lock:
            if position <= self._delivered:
                return
            if position >= self._next:
                raise ValueError(f"cannot mark position {position} delivered: only {self._next} record(s) exist")
            _write_atomically(self.directory / DELIVERED_NAME, f"{position}\n".encode())
            with self._lock:
                self._delivered = position
                self._drop_delivered_segments(keep_active_below=self.segment_bytes // 4)

    # closing ---------------------------------------------------------------------------------
    def close(self, *, remove_if_delivered: bool = False) -> bool:
        """Release the spool; with ``remove_if_delivered`` delete the directory when nothing is
        pending. Returns whether the directory was removed."""
        with self._io_lock, self._lock:
            if self._closed:
                return False
            error: SpoolError | None = None
            try:
                self._flush_buffer()
            except SpoolError as exc:
                error = exc
            self._closed = True
            if self._write_fd is not None:
                self._to_sync.append(self._write_fd)
                self._write_fd = None
            for fd in self._to_sync:
                with contextlib.suppress(OSError):
                    os.fsync(fd)
                os.close(fd)
            self._to_sync.clear()
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()
            remove = error is None and remove_if_delivered and self._next - 1 <= self._delivered
            if remove:
                shutil.rmtree(self.directory, ignore_errors=True)
            self._release_lock()
            if error is not None:
                raise error
            return remove

    def abandon_in_forked_child(self) -> None:
        """In a child process after ``fork``: drop the inherited descriptors without writing
        anything (records buffered here belong to the parent, which still owns the spool; closing
        the child's copy of the lock descriptor does not release the parent's flock)."""
        self._closed = True
        self._buffer = bytearray()
        self._tail = deque()
        fds = [fd for fd in (self._write_fd, self._lock_fd) if fd is not None]
        fds += self._to_sync + list(self._read_fds.values())
        self._write_fd = self._lock_fd = None
        self._to_sync, self._read_fds = [], {}
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _release_lock(self) -> None:
        fd, self._lock_fd = getattr(self, "_lock_fd", None), None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> "DiskSpool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"DiskSpool({str(self.directory)!r}, next={self._next}, delivered={self._delivered}, "
                f"bytes={self._size})")
