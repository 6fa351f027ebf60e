"""server.reader.lifecycle_entry: what the run page's lifecycle shows of each event-log row."""

from __future__ import annotations

import json

from trackstream.server.reader import lifecycle_entry


def test_status_changes_manifests_and_commits_carry_their_detail():
    assert lifecycle_entry("run_status_changed", 5, 6, json.dumps({"status": "FAILED"}))["detail"] == "FAILED"
    manifest = {"manifest": [{"path": "model.pt", "size": 1}, {"path": "eval.json", "size": 2}]}
    assert lifecycle_entry("finalize_requested", 5, 6, json.dumps(manifest))["detail"] == ["model.pt", "eval.json"]
    entry = lifecycle_entry("artifact_committed", 5, 6, json.dumps({"path": "model.pt"}))
    assert entry == {"event_type": "artifact_committed", "timestamp_ms": 5, "logged_ms": 6, "detail": "model.pt"}
    assert lifecycle_entry("run_created", 5, 6, json.dumps({"run_name": "x"}))["detail"] is None
