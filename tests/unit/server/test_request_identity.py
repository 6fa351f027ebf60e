"""A request's identity: the same write retried has the same identity, anything else does not."""

from trackstream.schemas.envelope import RequestStamp, is_request_writer
from trackstream.server.request_identity import request_identity

BODY = b'{"run_id": "r1", "metrics": [{"key": "loss", "value": 0.5, "timestamp": 1, "step": 0}]}'


def test_a_retried_request_has_the_same_identity():
    first = request_identity("POST", "/api/2.0/mlflow/runs/log-batch", "", BODY, None)
    assert first == request_identity("POST", "/api/2.0/mlflow/runs/log-batch", "", BODY, None)
    assert first == request_identity("POST", "/ajax-api/2.0/mlflow/runs/log-batch", "", BODY, None)


def test_another_route_body_or_query_is_another_identity():
    first = request_identity("POST", "/api/2.0/mlflow/runs/log-batch", "", BODY, None)
    assert first != request_identity("POST", "/api/2.0/mlflow/runs/log-metric", "", BODY, None)
    assert first != request_identity("POST", "/api/2.0/mlflow/runs/log-batch", "", BODY.replace(b"r1", b"r2"), None)
    assert first != request_identity("POST", "/api/2.0/mlflow/runs/log-batch", "a=1", BODY, None)
    assert first != request_identity("DELETE", "/api/2.0/mlflow/runs/log-batch", "", BODY, None)


def test_an_idempotency_key_names_the_request_instead_of_its_body():
    keyed = request_identity("POST", "/api/2.0/mlflow/runs/log-batch", "", BODY, "k-1")
    assert keyed == request_identity("POST", "/api/2.0/mlflow/runs/log-batch", "", b"{}", "k-1")
    assert keyed != request_identity("POST", "/api/2.0/mlflow/runs/log-batch", "", BODY, "k-2")
    assert keyed != request_identity("POST", "/api/2.0/mlflow/runs/log-batch", "", BODY, None)


def test_reads_have_no_identity():
    assert request_identity("GET", "/api/2.0/mlflow/runs/get", "run_id=r1", b"", None) is None
    assert request_identity("HEAD", "/api/2.0/mlflow/runs/get", "", b"", "k") is None


def test_a_request_stamp_makes_the_same_envelope_on_every_attempt():
    identity = request_identity("POST", "/api/2.0/mlflow/runs/log-batch", "", BODY, None)
    attempts = [RequestStamp(identity), RequestStamp(identity)]
    records = [[s.stamp("tags_set", {"run_id": "r1", "tags": []})[1] for _ in range(2)] for s in attempts]
    first, retry = records
    assert [(r["writer_id"], r["seq"], r["event_id"]) for r in first] == \
           [(r["writer_id"], r["seq"], r["event_id"]) for r in retry]
    assert [r["seq"] for r in first] == [1, 2] and first[0]["event_id"] != first[1]["event_id"]
    assert is_request_writer(first[0]["writer_id"]) and not is_request_writer("0" * 32)
    other_run = RequestStamp(identity).stamp("tags_set", {"run_id": "r2", "tags": []})[1]
    assert other_run["seq"] == 1
