"""server.mlflow_api.safe_artifact_path: the one check every artifact route applies to a path."""

from __future__ import annotations

import pytest

from trackstream.errors import InvalidInput
from trackstream.server.mlflow_api import checked_directory, safe_artifact_path


@pytest.mark.parametrize("path, shown", [
    ("1/r/artifacts/file#frag.txt", "'1/r/artifacts/file#frag.txt'"),
    ("1/r/artifacts/#", "'1/r/artifacts/#'"),
    ("1/r/artifacts/file%23frag.txt", "percent-decoded to '1/r/artifacts/file#frag.txt'"),
    ("1/r/artifacts/file%2523frag.txt", "percent-decoded to '1/r/artifacts/file#frag.txt'"),
])
def test_a_hash_is_refused_raw_and_percent_encoded(path: str, shown: str) -> None:
    with pytest.raises(InvalidInput) as info:
        safe_artifact_path(path)
    assert shown in str(info.value) and "'#' is not allowed" in str(info.value)


def test_listing_directories_are_checked_the_same_way() -> None:
    assert checked_directory("") == "" and checked_directory("a/b/") == "a/b"
    with pytest.raises(InvalidInput, match="'#' is not allowed"):
        checked_directory("a#b/")
    assert safe_artifact_path("1/r/artifacts/100%.txt") == "1/r/artifacts/100%.txt"
