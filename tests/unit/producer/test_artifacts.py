import hashlib
import json
import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from trackstream.producer.artifacts import (
    ArtifactRecord,
    ArtifactUploader,
    ArtifactUploadError,
    ArtifactVerificationError,
    LocalArtifactStore,
    S3ArtifactStore,
    artifact_key,
    figure_to_png,
    open_artifact_store,
    validate_artifact_path,
    write_temp_json,
    write_temp_text,
)
from trackstream.errors import DeliveryError, InvalidInput

EXP = "7"
RUN = "0123456789abcdef0123456789abcdef"


class Commits:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, str, str]] = []

    def __call__(self, run_id: str, path: str, size: int, sha256: str, uri: str) -> None:
        self.calls.append((run_id, path, size, sha256, uri))


def make_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def final_path(root: Path, artifact_path: str) -> Path:
    return root / EXP / RUN / "artifacts" / artifact_path


def staging_leftovers(root: Path) -> list[str]:
    staging = root / ".staging"
    return sorted(os.listdir(staging)) if staging.exists() else []


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def commits() -> Commits:
    return Commits()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def uploader_for(store, commits, sleeps, **kwargs) -> ArtifactUploader:
    return ArtifactUploader(store, commits, retries=kwargs.pop("retries", 3), backoff=kwargs.pop("backoff", 0.5),
                            sleep=sleeps.append, **kwargs)


# happy path ------------------------------------------------------------------------------


def test_upload_lands_at_final_path_and_commits_once(tmp_path, root, commits, sleeps):
    data = b"weights" * 1000
    local = make_file(tmp_path / "model.bin", data)
    uploader = uploader_for(LocalArtifactStore(root), commits, sleeps)

    record = uploader.upload(RUN, EXP, local, "models/model.bin")

    target = final_path(root, "models/model.bin")
    assert target.read_bytes() == data
    assert record == ArtifactRecord("models/model.bin", len(data), sha(data), target.as_uri())
    assert commits.calls == [(RUN, "models/model.bin", len(data), sha(data), target.as_uri())]
    assert uploader.manifest(RUN) == [{"path": "models/model.bin", "size": len(data), "sha256": sha(data)}]
    assert staging_leftovers(root) == []
    assert sleeps == []


def test_uri_matches_the_run_artifact_uri_the_materializer_builds(tmp_path, root, commits, sleeps):
    local = make_file(tmp_path / "a.txt", b"x")
    record = uploader_for(LocalArtifactStore(root), commits, sleeps).upload(RUN, EXP, local, "a.txt")
    assert record.uri == f"{root.absolute().as_uri()}/{EXP}/{RUN}/artifacts/a.txt"


def test_empty_file(tmp_path, root, commits, sleeps):
    local = make_file(tmp_path / "empty", b"")
    record = uploader_for(LocalArtifactStore(root), commits, sleeps).upload(RUN, EXP, local, "empty")
    assert (record.size, record.sha256) == (0, sha(b""))
    assert final_path(root, "empty").read_bytes() == b""


def test_manifest_is_per_run_and_a_reupload_replaces_the_entry(tmp_path, root, commits, sleeps):
    uploader = uploader_for(LocalArtifactStore(root), commits, sleeps)
    other_run = "f" * 32
    uploader.upload(RUN, EXP, make_file(tmp_path / "a", b"one"), "a.txt")
    uploader.upload(RUN, EXP, make_file(tmp_path / "b", b"two"), "b.txt")
    uploader.upload(RUN, EXP, make_file(tmp_path / "a2", b"one, again"), "a.txt")
    uploader.upload(other_run, EXP, make_file(tmp_path / "c", b"three"), "c.txt")

    assert uploader.manifest(RUN) == [
        {"path": "a.txt", "size": 10, "sha256": sha(b"one, again")},
        {"path": "b.txt", "size": 3, "sha256": sha(b"two")},
    ]
    assert [m["path"] for m in uploader.manifest(other_run)] == ["c.txt"]
    assert final_path(root, "a.txt").read_bytes() == b"one, again"
    assert len(commits.calls) == 4
    uploader.forget_run(RUN)
    assert uploader.manifest(RUN) == []


def test_reader_side_open_and_list_skip_staging(tmp_path, root, commits, sleeps):
    store = LocalArtifactStore(root)
    uploader = uploader_for(store, commits, sleeps)
    uploader.upload(RUN, EXP, make_file(tmp_path / "a", b"A"), "a.txt")
    uploader.upload(RUN, EXP, make_file(tmp_path / "b", b"B"), "sub/b.txt")
    (root / ".staging" / ("0" * 32)).write_bytes(b"leftover")

    prefix = f"{EXP}/{RUN}/artifacts"
    assert store.list() == [f"{prefix}/a.txt", f"{prefix}/sub/b.txt"]
    assert store.list(f"{prefix}/sub") == [f"{prefix}/sub/b.txt"]
    assert store.list(f"{prefix}/a.txt") == [f"{prefix}/a.txt"]
    assert store.list(f"{prefix}/missing") == []
    with store.open(f"{prefix}/sub/b.txt") as f:
        assert f.read() == b"B"


# chunking and progress -------------------------------------------------------------------


def test_put_staged_copies_in_chunks_and_reports_every_byte(tmp_path, root):
    data = os.urandom(10_000)
    local = make_file(tmp_path / "big.bin", data)
    store = LocalArtifactStore(root, chunk_size=1024)
    chunks: list[int] = []

    store.put_staged(local, "a" * 32, lambda chunk: chunks.append(len(chunk)))

    assert sum(chunks) == len(data)
    assert len(chunks) == 10 and max(chunks) == 1024
    assert store.stat_staged("a" * 32) == (len(data), sha(data))


def test_chunked_upload_through_the_uploader(tmp_path, root, commits, sleeps):
    data = os.urandom(100_000)
    local = make_file(tmp_path / "big.bin", data)
    uploader = uploader_for(LocalArtifactStore(root, chunk_size=4096), commits, sleeps)
    record = uploader.upload(RUN, EXP, local, "big.bin")
    assert (record.size, record.sha256) == (len(data), sha(data))
    assert final_path(root, "big.bin").read_bytes() == data


def test_progress_bar_shown_when_asked(tmp_path, root, commits, sleeps, capsys):
    local = make_file(tmp_path / "f", b"x" * 5000)
    uploader_for(LocalArtifactStore(root), commits, sleeps, progress=True).upload(RUN, EXP, local, "shown.bin")
    assert "shown.bin" in capsys.readouterr().err


def test_progress_bar_hidden_when_stderr_is_not_a_terminal(tmp_path, root, commits, sleeps, capsys):
    local = make_file(tmp_path / "f", b"x" * 5000)
    assert not sys.stderr.isatty()
    uploader_for(LocalArtifactStore(root), commits, sleeps).upload(RUN, EXP, local, "hidden.bin")
    assert capsys.readouterr().err == ""


# failures --------------------------------------------------------------------------------


class DiesMidway(LocalArtifactStore):
    """Writes half the file to staging, then the connection 'drops'."""

    def __init__(self, root, fail_times=10**9, exc=None):
        super().__init__(root)
        self.fail_times = fail_times
        self.exc = exc or ConnectionResetError("connection reset by peer")
        self.attempts = 0

    def put_staged(self, local_path, staging_key, progress):
        self.attempts += 1
        if self.attempts > self.fail_times:
            return super().put_staged(local_path, staging_key, progress)
        self._staging.mkdir(exist_ok=True)
        data = Path(local_path).read_bytes()
        self.staging_path(staging_key).write_bytes(data[: len(data) // 2])
        progress(memoryview(data[: len(data) // 2]))
        raise self.exc


class Truncates(LocalArtifactStore):
    """A torn upload: put_staged reports success but only part of the file landed."""

    def put_staged(self, local_path, staging_key, progress):
        super().put_staged(local_path, staging_key, progress)
        staged = self.staging_path(staging_key)
        os.truncate(staged, staged.stat().st_size // 2)


class Corrupts(LocalArtifactStore):
    """Same size, different bytes: only the sha256 can tell."""

    def put_staged(self, local_path, staging_key, progress):
        super().put_staged(local_path, staging_key, progress)
        staged = self.staging_path(staging_key)
        data = bytearray(staged.read_bytes())
        data[0] ^= 0xFF
        staged.write_bytes(bytes(data))


def assert_nothing_committed(root, commits, uploader, artifact_path):
    assert commits.calls == []
    assert uploader.manifest(RUN) == []
    assert not final_path(root, artifact_path).exists()
    assert staging_leftovers(root) == []


def test_interrupted_upload_retries_then_raises_and_never_commits(tmp_path, root, commits, sleeps):
    local = make_file(tmp_path / "model.bin", b"m" * 4000)
    store = DiesMidway(root)
    uploader = uploader_for(store, commits, sleeps, retries=3, backoff=0.5)

    with pytest.raises(ArtifactUploadError) as info:
        uploader.upload(RUN, EXP, local, "model.bin")

    err = info.value
    assert isinstance(err, DeliveryError)
    assert str(local) in str(err) and "'model.bin'" in str(err)
    assert "ConnectionResetError: connection reset by peer" in str(err)
    assert isinstance(err.__cause__, ConnectionResetError)
    assert (err.attempts, err.artifact_path, err.local_path) == (4, "model.bin", local)
    assert store.attempts == 4
    assert sleeps == [0.5, 1.0, 2.0]
    assert_nothing_committed(root, commits, uploader, "model.bin")


def test_transient_failure_then_success_commits_once(tmp_path, root, commits, sleeps):
    data = b"m" * 4000
    local = make_file(tmp_path / "model.bin", data)
    store = DiesMidway(root, fail_times=2)
    uploader = uploader_for(store, commits, sleeps)

    record = uploader.upload(RUN, EXP, local, "model.bin")

    assert store.attempts == 3 and sleeps == [0.5, 1.0]
    assert commits.calls == [(RUN, "model.bin", len(data), sha(data), record.uri)]
    assert final_path(root, "model.bin").read_bytes() == data
    assert staging_leftovers(root) == []


@pytest.mark.parametrize("store_cls", [Truncates, Corrupts], ids=["torn", "corrupted"])
def test_staged_copy_that_does_not_match_is_never_committed(tmp_path, root, commits, sleeps, store_cls):
    local = make_file(tmp_path / "model.bin", os.urandom(5000))
    uploader = uploader_for(store_cls(root), commits, sleeps, retries=2)

    with pytest.raises(ArtifactUploadError) as info:
        uploader.upload(RUN, EXP, local, "model.bin")

    assert isinstance(info.value.__cause__, ArtifactVerificationError)
    assert "does not match" in str(info.value)
    assert len(sleeps) == 2
    assert_nothing_committed(root, commits, uploader, "model.bin")


def test_local_file_changing_during_upload_is_not_committed(tmp_path, root, commits, sleeps):
    local = make_file(tmp_path / "growing.log", b"line\n" * 100)

    class Appends(LocalArtifactStore):
        def put_staged(self, local_path, staging_key, progress):
            super().put_staged(local_path, staging_key, progress)
            with open(local_path, "ab") as f:
                f.write(b"more\n")

    uploader = uploader_for(Appends(root), commits, sleeps, retries=1)
    with pytest.raises(ArtifactUploadError, match="changed while it was being uploaded"):
        uploader.upload(RUN, EXP, local, "growing.log")
    assert_nothing_committed(root, commits, uploader, "growing.log")


def test_keyboard_interrupt_discards_staging_without_retrying(tmp_path, root, commits, sleeps):
    local = make_file(tmp_path / "model.bin", b"m" * 4000)
    store = DiesMidway(root, exc=KeyboardInterrupt())
    uploader = uploader_for(store, commits, sleeps)
    with pytest.raises(KeyboardInterrupt):
        uploader.upload(RUN, EXP, local, "model.bin")
    assert store.attempts == 1 and sleeps == []
    assert_nothing_committed(root, commits, uploader, "model.bin")


def test_failed_commit_propagates_and_stays_out_of_the_manifest(tmp_path, root, sleeps):
    def commit(*args):
        raise DeliveryError("broker did not acknowledge")

    uploader = ArtifactUploader(LocalArtifactStore(root), commit, sleep=sleeps.append)
    with pytest.raises(DeliveryError, match="broker did not acknowledge"):
        uploader.upload(RUN, EXP, make_file(tmp_path / "a", b"A"), "a.txt")
    assert uploader.manifest(RUN) == []


def test_a_new_version_that_fails_to_commit_leaves_the_committed_one_in_place(tmp_path, root, commits, sleeps):
    store = LocalArtifactStore(root)
    uploader = uploader_for(store, commits, sleeps)
    uploader.upload(RUN, EXP, make_file(tmp_path / "v1", b"committed"), "model.bin")
    served = []

    def dies_before_committing(*args):
        served.append(store.open(artifact_key(EXP, RUN, "model.bin")).read())  # what readers see meanwhile
        raise DeliveryError("process killed before the commit was acknowledged")

    uploader.commit = dies_before_committing
    with pytest.raises(DeliveryError, match="killed"):
        uploader.upload(RUN, EXP, make_file(tmp_path / "v2", b"never committed"), "model.bin")

    assert served == [b"committed"]
    assert final_path(root, "model.bin").read_bytes() == b"committed"
    assert commits.calls[-1][3] == sha(b"committed")
    assert staging_leftovers(root) == [] and os.listdir(root / ".versions") == []
    assert store.list() == [artifact_key(EXP, RUN, "model.bin")]


def test_the_path_switches_to_the_new_version_only_after_the_commit(tmp_path, root, sleeps):
    store = LocalArtifactStore(root)
    seen_at_commit = []
    target = final_path(root, "a.txt")
    uploader = ArtifactUploader(store, lambda *args: seen_at_commit.append(target.exists() and target.read_bytes()),
                                sleep=sleeps.append)
    uploader.upload(RUN, EXP, make_file(tmp_path / "v1", b"one"), "a.txt")
    uploader.upload(RUN, EXP, make_file(tmp_path / "v2", b"two"), "a.txt")
    assert seen_at_commit == [False, b"one"]
    assert final_path(root, "a.txt").read_bytes() == b"two"
    assert os.listdir(root / ".versions") == []


def test_a_directory_at_the_path_fails_before_anything_is_committed(tmp_path, root, commits, sleeps):
    uploader = uploader_for(LocalArtifactStore(root), commits, sleeps)
    uploader.upload(RUN, EXP, make_file(tmp_path / "b", b"B"), "a/b")
    with pytest.raises(ArtifactUploadError, match="after 1 attempt") as info:
        uploader.upload(RUN, EXP, make_file(tmp_path / "a", b"A"), "a")
    assert isinstance(info.value.__cause__, IsADirectoryError)
    assert len(commits.calls) == 1


def test_missing_local_file_is_invalid_input(tmp_path, root, commits, sleeps):
    uploader = uploader_for(LocalArtifactStore(root), commits, sleeps)
    with pytest.raises(InvalidInput, match="nope.bin"):
        uploader.upload(RUN, EXP, tmp_path / "nope.bin", "nope.bin")
    with pytest.raises(InvalidInput, match="is not a regular file"):
        uploader.upload(RUN, EXP, tmp_path, "dir")
    assert commits.calls == []


def test_a_file_where_a_directory_must_go_fails_without_retrying(tmp_path, root, commits, sleeps):
    uploader = uploader_for(LocalArtifactStore(root), commits, sleeps)
    uploader.upload(RUN, EXP, make_file(tmp_path / "a", b"A"), "a")
    with pytest.raises(ArtifactUploadError, match="after 1 attempt") as info:
        uploader.upload(RUN, EXP, make_file(tmp_path / "b", b"B"), "a/b")
    assert isinstance(info.value.__cause__, (FileExistsError, NotADirectoryError))
    assert sleeps == [] and len(commits.calls) == 1
    assert staging_leftovers(root) == []


# path safety -----------------------------------------------------------------------------

UNSAFE_PATHS = [
    ("../x", "'..' components"),
    ("a/../../x", "'..' components"),
    ("a/..", "'..' components"),
    ("..", "'..' components"),
    ("/etc/passwd", "relative, not absolute"),
    ("C:\\x", "backslashes"),
    ("a\\..\\..\\x", "backslashes"),
    ("C:/x", "drive letter"),
    ("a\x00b", "control character"),
    ("a\nb", "control character"),
    ("", "must not be empty"),
    (".", "normalized"),
    ("a//b", "normalized"),
    ("a/./b", "normalized"),
    ("a/", "normalized"),
]


@pytest.mark.parametrize("path, reason", UNSAFE_PATHS, ids=[repr(p) for p, _ in UNSAFE_PATHS])
def test_unsafe_artifact_paths_are_rejected_before_any_upload(tmp_path, root, commits, sleeps, path, reason):
    store = DiesMidway(root, fail_times=0)
    uploader = uploader_for(store, commits, sleeps)
    with pytest.raises(InvalidInput) as info:
        uploader.upload(RUN, EXP, make_file(tmp_path / "f", b"x"), path)
    assert repr(path) in str(info.value) and reason in str(info.value)
    assert store.attempts == 0 and commits.calls == []


@pytest.mark.parametrize("path", ["..%2fx", "..%2f..%2fetc%2fpasswd", "..foo", "a/...", "ab:c", "é/ü.txt"])
def test_odd_but_literal_names_are_accepted(path):
    assert validate_artifact_path(path) == path


@pytest.mark.parametrize("path", ["file#frag.txt", "dir#x/a.txt", "#"])
def test_a_hash_in_an_artifact_path_is_refused_by_the_sdk_as_by_the_gateway(path):
    with pytest.raises(InvalidInput, match="'#' is not allowed in artifact paths"):
        validate_artifact_path(path)


def test_percent_encoded_dots_are_a_literal_file_name(tmp_path, root, commits, sleeps):
    record = uploader_for(LocalArtifactStore(root), commits, sleeps).upload(
        RUN, EXP, make_file(tmp_path / "f", b"x"), "..%2fescape")
    target = final_path(root, "..%2fescape")
    assert target.read_bytes() == b"x"
    assert os.listdir(root / EXP / RUN / "artifacts") == ["..%2fescape"]
    assert Path(unquote(urlparse(record.uri).path)) == target


@pytest.mark.parametrize("experiment_id, run_id", [("../1", RUN), (EXP, "../run"), (EXP, ""), (".staging", RUN)])
def test_bad_ids_are_rejected(experiment_id, run_id):
    with pytest.raises(InvalidInput):
        artifact_key(experiment_id, run_id, "a.txt")


def test_symlinked_directory_escaping_root_is_refused(tmp_path, root, commits, sleeps):
    outside = tmp_path / "outside"
    outside.mkdir()
    artifacts = root / EXP / RUN / "artifacts"
    artifacts.mkdir(parents=True)
    (artifacts / "link").symlink_to(outside, target_is_directory=True)
    uploader = uploader_for(LocalArtifactStore(root), commits, sleeps)

    with pytest.raises(InvalidInput, match=r"'7/.*/artifacts/link/x'.*outside/x, outside the artifact root"):
        uploader.upload(RUN, EXP, make_file(tmp_path / "f", b"x"), "link/x")

    assert os.listdir(outside) == []
    assert commits.calls == [] and sleeps == []
    assert staging_leftovers(root) == []


def test_symlinked_root_component_escaping_root_is_refused(tmp_path, root, commits, sleeps):
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / EXP).symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidInput, match="outside the artifact root"):
        uploader_for(LocalArtifactStore(root), commits, sleeps).upload(
            RUN, EXP, make_file(tmp_path / "f", b"x"), "a.txt")
    assert os.listdir(outside) == []


def test_symlink_into_the_staging_area_is_refused(tmp_path, root, commits, sleeps):
    store = LocalArtifactStore(root)
    (root / ".staging").mkdir()
    artifacts = root / EXP / RUN / "artifacts"
    artifacts.mkdir(parents=True)
    (artifacts / "st").symlink_to(root / ".staging", target_is_directory=True)
    with pytest.raises(InvalidInput, match="outside the artifact root"):
        uploader_for(store, commits, sleeps).upload(RUN, EXP, make_file(tmp_path / "f", b"x"), "st/x")


def test_symlink_that_stays_inside_root_is_followed(tmp_path, root, commits, sleeps):
    store = LocalArtifactStore(root)
    shared = root / "shared"
    shared.mkdir()
    artifacts = root / EXP / RUN / "artifacts"
    artifacts.mkdir(parents=True)
    (artifacts / "link").symlink_to(shared, target_is_directory=True)
    uploader_for(store, commits, sleeps).upload(RUN, EXP, make_file(tmp_path / "f", b"x"), "link/x")
    assert (shared / "x").read_bytes() == b"x"


def test_existing_symlink_at_the_final_path_is_replaced_not_written_through(tmp_path, root, commits, sleeps):
    victim = make_file(tmp_path / "victim", b"keep me")
    artifacts = root / EXP / RUN / "artifacts"
    artifacts.mkdir(parents=True)
    (artifacts / "a.txt").symlink_to(victim)
    uploader_for(LocalArtifactStore(root), commits, sleeps).upload(RUN, EXP, make_file(tmp_path / "f", b"new"), "a.txt")
    assert victim.read_bytes() == b"keep me"
    assert not (artifacts / "a.txt").is_symlink()
    assert (artifacts / "a.txt").read_bytes() == b"new"


def test_reader_refuses_keys_resolving_outside_root(tmp_path, root):
    secret = make_file(tmp_path / "secret", b"s")
    store = LocalArtifactStore(root)
    (root / "leak").symlink_to(secret)
    with pytest.raises(InvalidInput, match="outside the artifact root"):
        store.open("leak")
    with pytest.raises(InvalidInput):
        store.open("../secret")


def test_staging_keys_must_be_uuid_hex(root):
    store = LocalArtifactStore(root)
    for bad in ["../x", "A" * 32, "a" * 31, "a" * 32 + "/x"]:
        with pytest.raises(InvalidInput):
            store.staging_path(bad)


# upload_dir ------------------------------------------------------------------------------


def test_upload_dir_preserves_relative_structure(tmp_path, root, commits, sleeps):
    src = tmp_path / "out"
    make_file(src / "metrics.csv", b"m")
    make_file(src / "plots" / "loss.png", b"png")
    make_file(src / "plots" / "deep" / "x.txt", b"deep")
    (src / "empty").mkdir()
    store = LocalArtifactStore(root)
    uploader = uploader_for(store, commits, sleeps)

    records = uploader.upload_dir(RUN, EXP, src)
    assert [r.path for r in records] == ["metrics.csv", "plots/loss.png", "plots/deep/x.txt"]
    assert final_path(root, "plots/deep/x.txt").read_bytes() == b"deep"

    uploader.upload_dir(RUN, EXP, src, "run1/outputs")
    assert final_path(root, "run1/outputs/plots/loss.png").read_bytes() == b"png"
    assert {m["path"] for m in uploader.manifest(RUN)} == {
        "metrics.csv", "plots/loss.png", "plots/deep/x.txt",
        "run1/outputs/metrics.csv", "run1/outputs/plots/loss.png", "run1/outputs/plots/deep/x.txt",
    }
    assert len(commits.calls) == 6
    assert not final_path(root, "empty").exists()


def test_upload_dir_survives_a_symlink_cycle(tmp_path, root, commits, sleeps):
    src = tmp_path / "out"
    make_file(src / "a" / "f.txt", b"f")
    (src / "a" / "loop").symlink_to(src, target_is_directory=True)
    records = uploader_for(LocalArtifactStore(root), commits, sleeps).upload_dir(RUN, EXP, src)
    assert [r.path for r in records] == ["a/f.txt"]


def test_upload_dir_rejects_bad_inputs(tmp_path, root, commits, sleeps):
    uploader = uploader_for(LocalArtifactStore(root), commits, sleeps)
    with pytest.raises(InvalidInput, match="not a directory"):
        uploader.upload_dir(RUN, EXP, tmp_path / "missing")
    (tmp_path / "d").mkdir()
    with pytest.raises(InvalidInput, match="'../up'"):
        uploader.upload_dir(RUN, EXP, tmp_path / "d", "../up")


# S3 (pure parts only) --------------------------------------------------------------------


def test_s3_key_building():
    store = S3ArtifactStore("bucket", "/team/trackstream/", client=object())
    key = artifact_key(EXP, RUN, "models/m.bin")
    assert store.object_key(key) == f"team/trackstream/{EXP}/{RUN}/artifacts/models/m.bin"
    assert store.staging_object_key("b" * 32) == "team/trackstream/.staging/" + "b" * 32
    assert store.uri_for(key) == f"s3://bucket/team/trackstream/{EXP}/{RUN}/artifacts/models/m.bin"

    bare = S3ArtifactStore("bucket", client=object())
    assert bare.object_key("x/y") == "x/y"
    assert bare.staging_object_key("b" * 32) == ".staging/" + "b" * 32
    with pytest.raises(InvalidInput):
        bare.object_key("../x")
    with pytest.raises(InvalidInput):
        bare.staging_object_key("../x")
    with pytest.raises(InvalidInput):
        S3ArtifactStore("bucket", "a/../b", client=object())
    with pytest.raises(InvalidInput):
        S3ArtifactStore("bucket", client=object(), chunk_size=1024)


def test_s3_store_without_boto3_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an environment without boto3 sees
    with pytest.raises(ImportError, match="pip install boto3"):
        S3ArtifactStore("bucket")


def test_an_empty_store_location_opens_the_local_store_and_s3_one_a_bucket(monkeypatch, root):
    local = open_artifact_store("", root)
    assert isinstance(local, LocalArtifactStore) and local.root == root
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = open_artifact_store("s3://bucket/team/runs", root)
    assert isinstance(s3, S3ArtifactStore) and (s3.bucket, s3.prefix) == ("bucket", "team/runs")
    with pytest.raises(InvalidInput, match="must be s3://bucket"):
        open_artifact_store("/mnt/shared", root)


# SDK helpers -----------------------------------------------------------------------------


def test_write_temp_json_and_text(tmp_path, root, commits, sleeps):
    path = write_temp_json({"lr": 0.1, "layers": [1, 2]})
    try:
        assert json.loads(path.read_text()) == {"lr": 0.1, "layers": [1, 2]}
        record = uploader_for(LocalArtifactStore(root), commits, sleeps).upload(RUN, EXP, path, "config.json")
        assert final_path(root, "config.json").read_bytes() == path.read_bytes()
        assert record.path == "config.json"
    finally:
        path.unlink()
    text = write_temp_text("héllo\n")
    try:
        assert text.read_bytes() == "héllo\n".encode()
    finally:
        text.unlink()


def test_write_temp_helpers_reject_bad_input():
    with pytest.raises(InvalidInput, match="not JSON-serializable"):
        write_temp_json({"f": object()})
    with pytest.raises(InvalidInput, match="must be a string"):
        write_temp_text(b"bytes")


def test_figure_to_png_without_matplotlib_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an environment without matplotlib sees
    with pytest.raises(ImportError, match="pip install matplotlib"):
        figure_to_png(object(), tmp_path / "fig.png")

