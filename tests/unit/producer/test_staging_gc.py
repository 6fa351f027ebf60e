import os
import time

import pytest

from trackstream.config import Settings
from trackstream.errors import InvalidInput
from trackstream.producer.artifacts import ArtifactUploader, LocalArtifactStore, StagedObject
from trackstream.producer.staging_gc import (collect_staging, describe_duration, gc_interval_s, older_than,
                                             parse_duration)

RUN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("24h", 86400), ("2d", 172800),
                                           ("0.5h", 1800), (" 1H ", 3600), ("0", 0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1h", "1w", "1h30m", "h"])
def test_bad_durations_say_what_is_expected(text):
    with pytest.raises(InvalidInput, match="a number with an optional unit s, m, h or d"):
        parse_duration(text)


def test_durations_are_shown_in_the_largest_whole_unit():
    assert [describe_duration(s) for s in (86400, 7200, 90, 1800, 1.5)] == ["1d", "2h", "90s", "30m", "1.5s"]


def test_only_entries_last_written_before_the_grace_period_are_stale():
    entries = [StagedObject(".staging/a", 1, 1000.0), StagedObject(".staging/b", 2, 1060.0),
               StagedObject(".staging/c", 3, 1061.0)]
    assert older_than(entries, 60, now=1120.0) == entries[:1]
    with pytest.raises(InvalidInput, match="must not be negative"):
        older_than(entries, -1, now=0)


def test_the_interval_is_a_quarter_of_the_grace_period_within_bounds():
    assert (gc_interval_s(86400), gc_interval_s(60), gc_interval_s(1)) == (3600, 15, 0.5)


def test_the_grace_period_setting(monkeypatch):
    monkeypatch.setenv("TRACKSTREAM_STAGING_GRACE_S", "600")
    assert Settings.from_env().staging_grace_s == 600
    monkeypatch.delenv("TRACKSTREAM_STAGING_GRACE_S")
    assert Settings.from_env().staging_grace_s == 86400
    for bad in ("0", "-5", "soon", "inf"):
        monkeypatch.setenv("TRACKSTREAM_STAGING_GRACE_S", bad)
        with pytest.raises(InvalidInput, match="TRACKSTREAM_STAGING_GRACE_S must be a positive number of seconds"):
            Settings.from_env()


def test_collection_removes_old_staging_only(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    uploader = ArtifactUploader(store, lambda *a: None, progress=False)
    (tmp_path / "f").write_bytes(b"committed")
    uploader.upload(RUN, "0", tmp_path / "f", "f.txt")
    staging, versions = store.root / ".staging", store.root / ".versions"
    (staging / ("a" * 32)).write_bytes(b"x" * 10)
    (staging / ("b" * 32)).write_bytes(b"y" * 5)
    (versions / ("c" * 32)).write_bytes(b"a committed version not yet switched in")
    now = time.time()
    old = now - 3600
    for path in (staging / ("a" * 32), versions / ("c" * 32), store.root / "0" / RUN / "artifacts" / "f.txt"):
        os.utime(path, (old, old))

    result = collect_staging([store], grace_s=600, now=now)

    assert [(e.name, e.size) for e in result.removed] == [(f".staging/{'a' * 32}", 10)]
    assert result.bytes_freed == 10 and [e.name for e in result.kept] == [f".staging/{'b' * 32}"]
    assert sorted(os.listdir(staging)) == ["b" * 32] and os.listdir(versions) == ["c" * 32]
    assert store.open(f"0/{RUN}/artifacts/f.txt").read() == b"committed"


def test_one_failure_does_not_stop_the_collection(tmp_path):
    class Stubborn(LocalArtifactStore):
        def remove_staged(self, staged):
            if staged.name.endswith("a" * 32):
                raise PermissionError("read-only")
            super().remove_staged(staged)

    store = Stubborn(tmp_path)
    (tmp_path / ".staging").mkdir()
    for name in ("a" * 32, "b" * 32):
        (tmp_path / ".staging" / name).write_bytes(b"z")
    result = collect_staging([store], grace_s=0, now=time.time() + 10)
    assert [e.name for e in result.removed] == [f".staging/{'b' * 32}"]
    assert result.errors == [f".staging/{'a' * 32}: PermissionError: read-only"]


def test_remove_staged_refuses_names_outside_the_staging_area(tmp_path):
    store = LocalArtifactStore(tmp_path)
    for name in (".staging/../x", ".staging/a/b", ".staging/.."):
        with pytest.raises(InvalidInput, match="Invalid staged name"):
            store.remove_staged(StagedObject(name, 0, 0.0))
