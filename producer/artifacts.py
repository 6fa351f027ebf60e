"""Artifact stores and the uploader that turns a local file into an ``artifact_committed`` event.

Every upload goes: copy to a staging location -> re-read what landed and compare size and
sha256 with the bytes that were sent -> set it aside as a version of its own (``promote``; the
file at the artifact's path is untouched) -> call ``commit`` -> once the commit is acknowledged,
switch the artifact's path to that version atomically (``publish``). What is served at a path is
therefore always a committed version: a process that dies between storing and committing leaves
the previous committed version in place. A torn, corrupted or interrupted upload is discarded and
retried, and after the last attempt raises :class:`ArtifactUploadError`; it is never committed,
so it never shows up in a run.

Layout (relative to the store root): ``<experiment_id>/<run_id>/artifacts/<artifact path>``,
the same place the materializer points a run's ``artifact_uri`` at.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import posixpath
import re
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Protocol
from urllib.parse import quote, unquote

from trackstream.producer.validation import validate_run_id
from trackstream.config import split_s3_location
from trackstream.errors import DeliveryError, InvalidInput

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = [
    "CHUNK_SIZE",
    "ArtifactStore",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "ArtifactUploader",
    "ArtifactRecord",
    "StagedObject",
    "StoredFile",
    "StoredVersion",
    "ArtifactUploadError",
    "ArtifactVerificationError",
    "Progress",
    "validate_artifact_path",
    "artifact_key",
    "write_temp_json",
    "write_temp_text",
    "figure_to_png",
    "open_artifact_store",
]

log = logging.getLogger(__name__)

CHUNK_SIZE = 8 * 1024 * 1024
STAGING_DIR = ".staging"
VERSIONS_DIR = ".versions"
RESERVED_DIRS = (STAGING_DIR, VERSIONS_DIR)
"""Top-level names the stores keep for themselves: never artifact keys, never listed."""

Progress = Callable[[memoryview], None]
"""Called by ``put_staged`` with every chunk, in order, exactly as it was sent. The uploader
hashes these bytes, so the local sha256 costs no second read of the file."""

CommitFn = Callable[[str, str, int, str, str], None]

_STAGING_KEY = re.compile(r"[0-9a-f]{32}")
_ID = re.compile(r"[A-Za-z0-9][\w\-]{0,255}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"[A-Za-z]:")
_PERMANENT = (PermissionError, FileExistsError, IsADirectoryError, NotADirectoryError)
"""Errors another attempt cannot fix (a file where a directory must go, no write access): no retry."""


class ArtifactUploadError(DeliveryError):
    """An artifact could not be stored after every retry; it was not committed."""

    def __init__(self, message: str, *, local_path: Path, artifact_path: str, attempts: int) -> None:
        super().__init__(message)
        self.local_path = local_path
        self.artifact_path = artifact_path
        self.attempts = attempts


class ArtifactVerificationError(DeliveryError):
    """What landed in staging is not what was sent (torn or corrupted upload, or the file changed)."""


# paths ------------------------------------------------------------------------------------


def validate_artifact_path(path: Any, what: str = "artifact path") -> str:
    """Return ``path`` if it is a safe relative POSIX path, else raise :class:`InvalidInput`.

    Rejected: empty, absolute, a drive prefix (``C:``), any backslash or ``#``, NUL or other control
    characters, ``.`` / ``..`` / empty components, and anything ``posixpath.normpath`` would
    change. Percent signs are literal: ``..%2fx`` is a file named ``..%2fx``, nothing decodes it.
    """
    if not isinstance(path, str):
        raise InvalidInput(f"Invalid {what} {path!r}: must be a string, got {type(path).__name__}")
    problem = _path_problem(path)
    if problem:
        raise InvalidInput(f"Invalid {what} {path!r}: {problem}")
    return str.__str__(path)


HASH_PROBLEM = ("'#' is not allowed in artifact paths (it starts a URL fragment, so clients and proxies would "
                "cut the path there)")


def _path_problem(path: str) -> str | None:
    if not path:
        return "must not be empty"
    if "#" in path:
        return HASH_PROBLEM
    control = _CONTROL.search(path)
    if control:
        return f"control character {control.group()!r} at position {control.start()}"
    if "\\" in path:
        return "backslashes are not allowed; use '/' to separate directories"
    if path.startswith("/"):
        return "must be relative, not absolute"
    if _DRIVE.match(path):
        return "must not start with a drive letter"
    parts = path.split("/")
    if ".." in parts:
        return "'..' components are not allowed"
    if "" in parts or "." in parts or posixpath.normpath(path) != path:
        return f"must be normalized (no '.', empty or trailing components); did you mean {posixpath.normpath(path)!r}?"
    return None


def _validate_experiment_id(experiment_id: Any) -> str:
    if not isinstance(experiment_id, str) or not _ID.fullmatch(experiment_id):
        raise InvalidInput(
            f"Invalid experiment_id {experiment_id!r}: letters, digits, '_' or '-', starting with a letter or digit"
        )
    return str.__str__(experiment_id)


def artifact_key(experiment_id: str, run_id: str, artifact_path: str) -> str:
    """The store key of a run's artifact: ``<experiment_id>/<run_id>/artifacts/<artifact_path>``."""
    return "/".join((_validate_experiment_id(experiment_id), validate_run_id(run_id), "artifacts",
                     validate_artifact_path(artifact_path)))


def model_artifact_key(experiment_id: str, model_id: str, artifact_path: str) -> str:
    """The store key of a logged model's file: ``<experiment_id>/models/<model_id>/artifacts/<artifact_path>``
    (MLflow 3's layout, so ``mlflow-artifacts:/<exp>/models/<id>/artifacts`` resolves to it)."""
    return "/".join((_validate_experiment_id(experiment_id), "models", validate_run_id(model_id), "artifacts",
                     validate_artifact_path(artifact_path)))


def _check_staging_key(staging_key: str) -> str:
    if not isinstance(staging_key, str) or not _STAGING_KEY.fullmatch(staging_key):
        raise InvalidInput(f"Invalid staging key {staging_key!r}: expected 32 lowercase hex digits (uuid4().hex)")
    return staging_key


# stores -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFile:
    """A committed file: its store key and size in bytes."""

    key: str
    size: int


@dataclass(frozen=True)
class StoredVersion:
    """A verified upload set aside by ``promote`` and not switched in yet: the key it is for, the
    sha256 its commit event carries, when it was stored (Unix seconds). Left over only when the
    uploading process died between ``promote`` and ``publish``; ``key`` and ``sha256`` are empty
    when it died before even the version's bytes were in place."""

    version_id: str
    key: str
    sha256: str
    modified: float


@dataclass(frozen=True)
class StagedObject:
    """Something in a store's staging area: an upload in progress, or one a killed process left.
    ``name`` is what to show; ``modified`` the last write (Unix seconds); ``upload_id`` is set for
    an S3 multipart upload that was never completed (its parts cost storage but are no object)."""

    name: str
    size: int
    modified: float
    upload_id: str = ""


class ArtifactStore(Protocol):
    """Where artifact bytes live. Keys are validated relative POSIX paths (see :func:`artifact_key`)."""

    def put_staged(self, local_path: Path, staging_key: str, progress: Progress) -> None:
        """Copy ``local_path`` in chunks to the staging location ``staging_key`` (32 hex digits)."""

    def stat_staged(self, staging_key: str) -> tuple[int, str]:
        """``(size, sha256 hex)`` of what landed, computed by reading the staged object back."""

    def promote(self, staging_key: str, final_key: str, sha256: str) -> str:
        """Set the verified staged object aside as the version ``staging_key`` of ``final_key``, without
        touching what ``final_key`` serves; fail (``NotADirectoryError``, ``IsADirectoryError``,
        ``FileExistsError``) if ``final_key`` could never be published. Return the URI ``final_key`` has."""

    def publish(self, staging_key: str, final_key: str) -> None:
        """Switch ``final_key`` to the version ``staging_key`` atomically (readers see the old or the new
        object, whole) and drop the version. Called only once its commit event was acknowledged."""

    def discard_staged(self, staging_key: str) -> None:
        """Delete the staged object and its version; no error if they do not exist."""

    def open(self, final_key: str) -> BinaryIO:
        """The committed file's bytes; ``FileNotFoundError`` if there is none at ``final_key``."""

    def open_sized(self, final_key: str) -> tuple[BinaryIO, int]:
        """``open`` and the file's size, from the same read (what a download announces is what it sends)."""

    def uri_for(self, final_key: str) -> str:
        ...

    def list(self, prefix: str = "") -> builtins.list[str]:
        """Keys of every committed file under ``prefix`` (recursive, sorted)."""

    def list_files(self, prefix: str = "") -> builtins.list[StoredFile]:
        """``list`` with each file's size: the file ``prefix`` itself, or every file under the directory ``prefix``."""

    def list_staged(self) -> builtins.list[StagedObject]:
        """Everything in the staging area (never a committed artifact, never a version)."""

    def remove_staged(self, staged: StagedObject) -> None:
        """Delete one entry of ``list_staged``; no error if it is already gone."""

    def list_versions(self) -> builtins.list[StoredVersion]:
        """Versions promoted and never published or discarded."""

    def modified(self, final_key: str) -> float | None:
        """When the file at ``final_key`` was last switched in (Unix seconds); None if there is none."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(path: Path) -> None:
    """``mkdir -p`` that fsyncs the parent of every directory it creates."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            if not directory.is_dir():
                raise
        _fsync_dir(directory.parent)


class LocalArtifactStore:
    """Artifacts on a local disk or shared mount under ``root``.

    Staging files live in ``<root>/.staging/`` so ``promote`` is an ``os.replace`` on the same
    filesystem. Every key is checked after resolving symlinks: a path that would land outside
    ``root`` (or in its staging area) raises :class:`InvalidInput`. The check guards against
    hostile artifact names and misconfigured links; it cannot stop someone with write access to
    ``root`` who swaps a directory for a symlink between the check and the move.
    """

    def __init__(self, root: str | os.PathLike[str], *, chunk_size: int = CHUNK_SIZE) -> None:
        if chunk_size <= 0:
            raise InvalidInput(f"Invalid chunk_size {chunk_size}: must be positive")
        self.root = Path(root).absolute()
        self.chunk_size = chunk_size
        self.root.mkdir(parents=True, exist_ok=True)
        self._real_root = self.root.resolve()
        self._staging = self._real_root / STAGING_DIR
        self._versions = self._real_root / VERSIONS_DIR

    def staging_path(self, staging_key: str) -> Path:
        return self._staging / _check_staging_key(staging_key)

    def version_path(self, staging_key: str) -> Path:
        return self._versions / _check_staging_key(staging_key)

    def put_staged(self, local_path: Path, staging_key: str, progress: Progress) -> None:
        target = self.staging_path(staging_key)
        self._staging.mkdir(exist_ok=True)
        if self._staging.resolve() != self._staging:
            raise InvalidInput(f"Staging directory {self._staging} is a symlink; refusing to write through it")
        buffer = bytearray(self.chunk_size)
        view = memoryview(buffer)
        with open(local_path, "rb", buffering=0) as src, open(target, "xb") as dst:
            while n := src.readinto(buffer):
                chunk = view[:n]
                dst.write(chunk)
                progress(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        _fsync_dir(self._staging)

    def stat_staged(self, staging_key: str) -> tuple[int, str]:
        with open(self.staging_path(staging_key), "rb") as staged:
            digest = hashlib.file_digest(staged, "sha256")
            return staged.tell(), digest.hexdigest()

    def promote(self, staging_key: str, final_key: str, sha256: str) -> str:
        target = self._write_path(final_key)
        _makedirs_durable(target.parent)
        if target.is_dir() and not target.is_symlink():  # a link is replaced, never written through
            raise IsADirectoryError(f"{target} is a directory")
        self._versions.mkdir(exist_ok=True)
        version = self.version_path(staging_key)
        with open(version.with_suffix(".json"), "x") as meta:  # what the version is for, before it exists
            json.dump({"key": final_key, "sha256": sha256}, meta)
            meta.flush()
            os.fsync(meta.fileno())
        os.replace(self.staging_path(staging_key), version)
        _fsync_dir(self._versions)
        _fsync_dir(self._staging)
        return self.uri_for(final_key)

    def publish(self, staging_key: str, final_key: str) -> None:
        target = self._write_path(final_key)
        version = self.version_path(staging_key)
        os.replace(version, target)
        _fsync_dir(target.parent)
        version.with_suffix(".json").unlink(missing_ok=True)
        _fsync_dir(self._versions)

    def discard_staged(self, staging_key: str) -> None:
        self.staging_path(staging_key).unlink(missing_ok=True)
        version = self.version_path(staging_key)
        version.unlink(missing_ok=True)
        version.with_suffix(".json").unlink(missing_ok=True)

    def list_versions(self) -> builtins.list[StoredVersion]:
        found = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self._versions) as entries:
            for entry in entries:
                version_id, _, suffix = entry.name.partition(".")
                if suffix != "json" or not _STAGING_KEY.fullmatch(version_id):
                    continue
                try:
                    meta = json.loads(Path(entry.path).read_text())
                    modified = (self._versions / version_id).stat().st_mtime
                except FileNotFoundError:  # died before its bytes were moved here (or published meanwhile)
                    found.append(StoredVersion(version_id, "", "", entry.stat().st_mtime))
                else:
                    found.append(StoredVersion(version_id, meta["key"], meta["sha256"], modified))
        return sorted(found, key=lambda v: v.version_id)

    def modified(self, final_key: str) -> float | None:
        try:
            return self._read_path(final_key).stat().st_mtime
        except FileNotFoundError:
            return None

    def open(self, final_key: str) -> BinaryIO:
        return open(self._read_path(final_key), "rb")

    def open_sized(self, final_key: str) -> tuple[BinaryIO, int]:
        handle = self.open(final_key)
        return handle, os.fstat(handle.fileno()).st_size

    def list_staged(self) -> builtins.list[StagedObject]:
        found = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self._staging) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):  # finished or discarded meanwhile
                    st = entry.stat(follow_symlinks=False)
                    found.append(StagedObject(f"{STAGING_DIR}/{entry.name}", st.st_size, st.st_mtime))
        return sorted(found, key=lambda o: o.name)

    def remove_staged(self, staged: StagedObject) -> None:
        name = staged.name.removeprefix(f"{STAGING_DIR}/")
        if "/" in name or name in ("", ".", ".."):
            raise InvalidInput(f"Invalid staged name {staged.name!r}: not an entry of {self._staging}")
        (self._staging / name).unlink(missing_ok=True)

    def uri_for(self, final_key: str) -> str:
        return self.root.joinpath(*validate_artifact_path(final_key, "artifact key").split("/")).as_uri()

    def list(self, prefix: str = "") -> builtins.list[str]:
        return [stored.key for stored in self.list_files(prefix)]

    def list_files(self, prefix: str = "") -> builtins.list[StoredFile]:
        base = self._read_path(prefix) if prefix else self._real_root
        if base.is_file():
            return [StoredFile(prefix, base.stat().st_size)]
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            here = Path(dirpath)
            if here == self._real_root:
                dirnames[:] = [d for d in dirnames if d not in RESERVED_DIRS]
            for name in filenames:
                real = (here / name).resolve()
                if not real.is_relative_to(self._real_root) or not real.is_file():
                    continue  # a link out of the store (or a dangling one) is not an artifact
                relative = (here / name).relative_to(base).as_posix()
                found.append(StoredFile(f"{prefix}/{relative}" if prefix else relative, real.stat().st_size))
        return sorted(found, key=lambda f: f.key)

    def _inside(self, key: str, resolved: Path) -> Path:
        if not resolved.is_relative_to(self._real_root) or any(
                resolved.is_relative_to(self._real_root / reserved) for reserved in RESERVED_DIRS):
            raise InvalidInput(
                f"Invalid artifact path {key!r}: it resolves to {resolved}, outside the artifact root "
                f"{self._real_root} (through a symlink)"
            )
        return resolved

    def _write_path(self, key: str) -> Path:
        """Resolve the parent only: a symlink as the last component is replaced, not written through."""
        candidate = self._real_root.joinpath(*validate_artifact_path(key, "artifact key").split("/"))
        return self._inside(key, candidate.parent.resolve() / candidate.name)

    def _read_path(self, key: str) -> Path:
        candidate = self._real_root.joinpath(*validate_artifact_path(key, "artifact key").split("/"))
        return self._inside(key, candidate.resolve())


class S3ArtifactStore:
    """Artifacts in an S3-compatible bucket under ``prefix``.

    Staging objects are ``<prefix>/.staging/<key>``, uploaded with multipart upload; ``promote``
    is a server-side copy (atomic per object for readers) followed by deleting the staged object.
    boto3 is imported only when no ``client`` is given; it then reads its endpoint and credentials
    from the environment (``AWS_ENDPOINT_URL`` for MinIO, Ceph and the like). Tested against an S3
    server on loopback in ``tests/integration/test_s3_artifacts.py``.
    """

    MIN_PART_SIZE = 5 * 1024 * 1024
    MAX_PARTS = 10_000

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, chunk_size: int = CHUNK_SIZE,
                 **client_kwargs: Any) -> None:
        if chunk_size < self.MIN_PART_SIZE:
            raise InvalidInput(f"Invalid chunk_size {chunk_size}: S3 parts must be at least {self.MIN_PART_SIZE} bytes")
        if not bucket:
            raise InvalidInput("Invalid S3 bucket '': must not be empty")
        prefix = prefix.strip("/")
        if prefix:
            validate_artifact_path(prefix, "S3 prefix")
        if client is None:
            try:
                import boto3
            except ImportError as exc:
                raise ImportError("S3ArtifactStore needs boto3, which is not installed: pip install boto3") from exc
            client = boto3.client("s3", **client_kwargs)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.chunk_size = chunk_size

    def object_key(self, final_key: str) -> str:
        key = validate_artifact_path(final_key, "artifact key")
        return f"{self.prefix}/{key}" if self.prefix else key

    def staging_object_key(self, staging_key: str) -> str:
        key = f"{STAGING_DIR}/{_check_staging_key(staging_key)}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def version_object_key(self, staging_key: str) -> str:
        key = f"{VERSIONS_DIR}/{_check_staging_key(staging_key)}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri_for(self, final_key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(final_key)}"

    def put_staged(self, local_path: Path, staging_key: str, progress: Progress) -> None:
        key = self.staging_object_key(staging_key)
        size = os.stat(local_path).st_size
        part_size = max(self.chunk_size, -(-size // self.MAX_PARTS))
        with open(local_path, "rb") as src:
            if size <= part_size:
                body = src.read()
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
                progress(memoryview(body))
                return
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
            try:
                parts = []
                while chunk := src.read(part_size):
                    number = len(parts) + 1
                    response = self.client.upload_part(Bucket=self.bucket, Key=key, PartNumber=number,
                                                       UploadId=upload_id, Body=chunk)
                    parts.append({"ETag": response["ETag"], "PartNumber": number})
                    progress(memoryview(chunk))
                self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                      MultipartUpload={"Parts": parts})
            except BaseException:
                with contextlib.suppress(Exception):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                raise

    def stat_staged(self, staging_key: str) -> tuple[int, str]:
        body = self.client.get_object(Bucket=self.bucket, Key=self.staging_object_key(staging_key))["Body"]
        digest, size = hashlib.sha256(), 0
        for chunk in body.iter_chunks(self.chunk_size):
            digest.update(chunk)
            size += len(chunk)
        return size, digest.hexdigest()

    def promote(self, staging_key: str, final_key: str, sha256: str) -> str:
        self._move(self.staging_object_key(staging_key), self.version_object_key(staging_key),
                   {"key": quote(self.object_key(final_key)), "sha256": sha256})
        return self.uri_for(final_key)

    def publish(self, staging_key: str, final_key: str) -> None:
        self._move(self.version_object_key(staging_key), self.object_key(final_key), {})

    def list_versions(self) -> builtins.list[StoredVersion]:
        root = f"{self.prefix}/" if self.prefix else ""
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=f"{root}{VERSIONS_DIR}/"):
            for obj in page.get("Contents", ()):
                meta = self.client.head_object(Bucket=self.bucket, Key=obj["Key"]).get("Metadata", {})
                key = unquote(meta.get("key", ""))
                found.append(StoredVersion(obj["Key"].rsplit("/", 1)[-1], key[len(root):] if key else "",
                                           meta.get("sha256", ""), obj["LastModified"].timestamp()))
        return sorted(found, key=lambda v: v.version_id)

    def modified(self, final_key: str) -> float | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.object_key(final_key))["LastModified"].timestamp()
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _move(self, source: str, target: str, metadata: dict[str, str]) -> None:
        """Server-side copy (atomic per object for readers) carrying ``metadata``, then delete the source."""
        self.client.copy({"Bucket": self.bucket, "Key": source}, self.bucket, target,
                         ExtraArgs={"Metadata": metadata, "MetadataDirective": "REPLACE"})
        try:
            self.client.delete_object(Bucket=self.bucket, Key=source)
        except Exception:  # the copy is in place; a leftover source object is only garbage
            log.warning("could not delete s3://%s/%s after copying it", self.bucket, source, exc_info=True)

    def discard_staged(self, staging_key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.staging_object_key(staging_key))
        self.client.delete_object(Bucket=self.bucket, Key=self.version_object_key(staging_key))

    def open(self, final_key: str) -> BinaryIO:
        return self.open_sized(final_key)[0]

    def open_sized(self, final_key: str) -> tuple[BinaryIO, int]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(final_key))
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"no artifact at s3://{self.bucket}/{self.object_key(final_key)}") from None
        return response["Body"], response["ContentLength"]

    def list_staged(self) -> builtins.list[StagedObject]:
        root = f"{self.prefix}/" if self.prefix else ""
        staging = f"{root}{STAGING_DIR}/"
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=staging):
            for obj in page.get("Contents", ()):
                found.append(StagedObject(obj["Key"][len(root):], obj["Size"], obj["LastModified"].timestamp()))
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=staging):
            for upload in page.get("Uploads", ()):
                parts = self.client.list_parts(Bucket=self.bucket, Key=upload["Key"],
                                               UploadId=upload["UploadId"]).get("Parts", ())
                written = max((p["LastModified"] for p in parts), default=upload["Initiated"])  # the last part sent
                found.append(StagedObject(upload["Key"][len(root):], sum(p["Size"] for p in parts),
                                          written.timestamp(), upload["UploadId"]))
        return sorted(found, key=lambda o: (o.name, o.upload_id))

    def remove_staged(self, staged: StagedObject) -> None:
        if not staged.name.startswith(f"{STAGING_DIR}/"):
            raise InvalidInput(f"Invalid staged name {staged.name!r}: not under {STAGING_DIR}/")
        key = f"{self.prefix}/{staged.name}" if self.prefix else staged.name
        if staged.upload_id:
            with contextlib.suppress(self.client.exceptions.NoSuchUpload):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=staged.upload_id)
        else:
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def list(self, prefix: str = "") -> builtins.list[str]:
        return [stored.key for stored in self.list_files(prefix)]

    def list_files(self, prefix: str = "") -> builtins.list[StoredFile]:
        root = f"{self.prefix}/" if self.prefix else ""
        search = self.object_key(prefix) if prefix else root
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=search):
            for obj in page.get("Contents", ()):
                key = obj["Key"][len(root):]
                if prefix and key != prefix and not key.startswith(f"{prefix}/"):
                    continue  # "a/bc" when listing "a/b"
                if key.split("/", 1)[0] not in RESERVED_DIRS:
                    found.append(StoredFile(key, obj["Size"]))
        return sorted(found, key=lambda f: f.key)


def open_artifact_store(location: str, local_root: str | os.PathLike[str]) -> "ArtifactStore":
    """The store a ``TRACKSTREAM_ARTIFACT_STORE`` location names: ``s3://bucket[/prefix]``, or the
    local store at ``local_root`` when ``location`` is empty."""
    if not location:
        return LocalArtifactStore(local_root)
    return S3ArtifactStore(*split_s3_location(location))


# uploader ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactRecord:
    path: str
    size: int
    sha256: str
    uri: str


class ArtifactUploader:
    """Uploads files to ``store`` and calls ``commit(run_id, path, size, sha256, uri)`` for each one
    that landed intact; keeps, per run, the manifest that ``end_run`` sends with finalize-requested.

    ``retries`` is the number of attempts after the first; retry ``n`` waits
    ``backoff * 2 ** (n - 1)`` seconds first. Permission errors and a file standing where a
    directory must go (or vice versa) fail at once. ``progress=None`` shows a tqdm bar only when stderr
    is a terminal.
    """

    def __init__(self, store: ArtifactStore, commit: CommitFn, retries: int = 3, backoff: float = 0.5, *,
                 progress: bool | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        if retries < 0 or backoff < 0:
            raise InvalidInput(f"Invalid retries={retries} / backoff={backoff}: must not be negative")
        self.store = store
        self.commit = commit
        self.retries = retries
        self.backoff = backoff
        self.progress = progress
        self._sleep = sleep
        self._lock = threading.Lock()
        self._manifests: dict[str, dict[str, ArtifactRecord]] = {}

    def upload(self, run_id: str, experiment_id: str, local_path: str | os.PathLike[str],
               artifact_path: str, *, key: str | None = None) -> ArtifactRecord:
        """Store ``local_path`` as the run's artifact ``artifact_path`` (the full relative file path).
        ``key``: another store key (a logged model's file, ``model_artifact_key``); ``run_id`` is then
        the id the commit callback and the manifest are kept under."""
        key = key or artifact_key(experiment_id, run_id, artifact_path)
        local = Path(local_path)
        if not local.is_file():
            raise InvalidInput(f"Invalid local file {str(local)!r}: does not exist or is not a regular file")
        size, sha256, uri, version = self._store_verified(local, artifact_path, key)
        try:
            self.commit(run_id, artifact_path, size, sha256, uri)
        except BaseException:
            self._discard(version)  # not acknowledged: the path keeps serving its committed version
            raise
        self._publish(version, key, artifact_path)
        record = ArtifactRecord(artifact_path, size, sha256, uri)
        with self._lock:
            self._manifests.setdefault(run_id, {})[artifact_path] = record
        return record

    def upload_dir(self, run_id: str, experiment_id: str, local_dir: str | os.PathLike[str],
                   artifact_path: str = "") -> builtins.list[ArtifactRecord]:
        """Upload every file under ``local_dir``, keeping its relative layout under ``artifact_path``.

        Symlinks are followed (directory cycles are visited once). Each file is committed on its
        own, so if one fails the ones before it stay committed.
        """
        base = Path(local_dir)
        if not base.is_dir():
            raise InvalidInput(f"Invalid local directory {str(base)!r}: does not exist or is not a directory")
        if artifact_path:
            validate_artifact_path(artifact_path)
        records = []
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                relative = path.relative_to(base).as_posix()
                destination = f"{artifact_path}/{relative}" if artifact_path else relative
                records.append(self.upload(run_id, experiment_id, path, destination))
        return records

    def manifest(self, run_id: str) -> builtins.list[dict[str, Any]]:
        """``[{path, size, sha256}]`` of every artifact this uploader committed for ``run_id``."""
        with self._lock:
            records = list(self._manifests.get(run_id, {}).values())
        return [{"path": r.path, "size": r.size, "sha256": r.sha256} for r in records]

    def forget_run(self, run_id: str) -> None:
        """Drop a run's manifest once its finalize-requested was sent."""
        with self._lock:
            self._manifests.pop(run_id, None)

    def _publish(self, version: str, key: str, artifact_path: str) -> None:
        try:
            self.store.publish(version, key)
        except Exception as exc:
            raise DeliveryError(
                f"artifact {artifact_path!r} was committed but could not be switched into place ({exc}); "
                f"its bytes are kept as version {version} in the store's {VERSIONS_DIR}/ area"
            ) from exc

    def _store_verified(self, local: Path, artifact_path: str, key: str) -> tuple[int, str, str, str]:
        """Stage, verify and promote ``local``: (size, sha256, uri, version id), the version not yet published."""
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        total = local.stat().st_size
        attempts = self.retries + 1
        tried = 0
        last: Exception | None = None
        from tqdm import tqdm  # imported on first upload: `import trackstream` stays light

        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=artifact_path,
                  disable=not show, leave=False) as bar:
            while tried < attempts and not isinstance(last, _PERMANENT):
                if tried:
                    self._sleep(self.backoff * 2 ** (tried - 1))
                    bar.reset(total=total)
                tried += 1
                staging_key = uuid.uuid4().hex
                promoted = False
                try:
                    size, sha256 = self._stage(local, staging_key, bar)
                    uri = self.store.promote(staging_key, key, sha256)
                    promoted = True
                    return size, sha256, uri, staging_key
                except InvalidInput:
                    raise
                except Exception as exc:
                    last = exc
                    log.warning("upload of %s to %r failed (attempt %d of %d): %s",
                                local, artifact_path, tried, attempts, exc)
                finally:
                    if not promoted:
                        self._discard(staging_key)
        raise ArtifactUploadError(
            f"could not upload {local} to artifact path {artifact_path!r} after {tried} attempt(s); "
            f"last error: {type(last).__name__}: {last}",
            local_path=local, artifact_path=artifact_path, attempts=tried,
        ) from last

    def _stage(self, local: Path, staging_key: str, bar: tqdm) -> tuple[int, str]:
        """Upload to staging and check that what landed is what was read; return (size, sha256)."""
        before = os.stat(local)
        digest, sent = hashlib.sha256(), 0

        def on_chunk(chunk: memoryview) -> None:
            nonlocal sent
            digest.update(chunk)
            sent += len(chunk)
            bar.update(len(chunk))

        self.store.put_staged(local, staging_key, on_chunk)
        after = os.stat(local)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or sent != after.st_size:
            raise ArtifactVerificationError(
                f"{local} changed while it was being uploaded ({before.st_size} bytes before, "
                f"{after.st_size} after, {sent} sent)"
            )
        local_stat = (sent, digest.hexdigest())
        landed = self.store.stat_staged(staging_key)
        if tuple(landed) != local_stat:
            raise ArtifactVerificationError(
                f"staged copy of {local} does not match what was sent: landed {landed[0]} bytes "
                f"sha256 {landed[1]}, sent {sent} bytes sha256 {local_stat[1]}"
            )
        return local_stat

    def _discard(self, staging_key: str) -> None:
        try:
            self.store.discard_staged(staging_key)
        except Exception:
            log.warning("could not discard staged upload %s", staging_key, exc_info=True)


# helpers for log_dict / log_text / log_figure ---------------------------------------------


def _write_temp(data: bytes, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="trackstream-", suffix=suffix)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return Path(name)


def write_temp_json(obj: Any) -> Path:
    """Write ``obj`` as indented JSON (like MLflow's ``log_dict``) to a temp file the caller deletes."""
    try:
        text = json.dumps(obj, indent=2)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"Invalid dictionary for log_dict: not JSON-serializable ({exc})") from None
    return _write_temp(text.encode(), ".json")


def write_temp_text(text: str) -> Path:
    """Write ``text`` as UTF-8 to a temp file the caller deletes."""
    if not isinstance(text, str):
        raise InvalidInput(f"Invalid text for log_text: must be a string, got {type(text).__name__}")
    return _write_temp(text.encode("utf-8"), ".txt")


def figure_to_png(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Save a matplotlib figure as PNG at ``path``; needs matplotlib."""
    try:
        import matplotlib  # noqa: F401  (the figure's own savefig needs it; say so plainly if it is missing)
    except ImportError:
        raise ImportError("figure_to_png needs matplotlib, which is not installed: pip install matplotlib") from None
    fig.savefig(path, format="png")
    return Path(path)
