"""One MLflow log-batch request is one event: a failure cannot leave half a batch."""

import asyncio

import pytest

from trackstream.errors import DeliveryError
from trackstream.server.mlflow_service import CachedRun, MlflowService


class FailingAfterFirstAppender:
    """Accepts the first event, then fails like a broker that went away mid-request."""

    def __init__(self):
        self.events = []

    async def append(self, event_type, fields):
        if self.events:
            raise DeliveryError("Kafka did not accept the event: injected failure")
        self.events.append((event_type, dict(fields)))
        return fields


def service_with_run(appender, run_id="r1"):
    service = MlflowService(appender, reader=None, run_query=None, consistency=None)
    service._runs.put(run_id, CachedRun("0"))
    return service


def test_a_failure_after_the_first_append_leaves_no_half_batch():
    appender = FailingAfterFirstAppender()
    service = service_with_run(appender)
    asyncio.run(service.log_batch(
        "r1", [{"key": "loss", "value": 0.5, "timestamp": 10, "step": 1}],
        [{"key": "lr", "value": "0.1"}], [{"key": "stage", "value": "dev"}]))
    assert len(appender.events) == 1
    event_type, fields = appender.events[0]
    assert event_type == "metrics_logged"
    assert fields["count"] == 1 and fields["keys"] == ["loss"]
    assert fields["params"] == [{"key": "lr", "value": "0.1"}]
    assert fields["tags"] == [{"key": "stage", "value": "dev"}]


@pytest.mark.parametrize("metrics, params, tags, expected_type", [
    ([], [{"key": "lr", "value": "0.1"}], [], "params_set"),
    ([], [], [{"key": "stage", "value": "dev"}], "tags_set"),
    ([{"key": "loss", "value": 1.0, "timestamp": 1, "step": 0}], [], [], "metrics_logged"),
])
def test_a_request_of_one_kind_keeps_its_own_event_type(metrics, params, tags, expected_type):
    appender = FailingAfterFirstAppender()
    asyncio.run(service_with_run(appender).log_batch("r1", metrics, params, tags))
    assert [e[0] for e in appender.events] == [expected_type]


def test_params_and_tags_without_points_are_still_one_event_and_materialize():
    from tests.unit.consumers.events import EventLog
    from tests.unit.consumers.test_materializer import EmptyStateReader
    from trackstream.consumers.materializer import Materializer

    appender = FailingAfterFirstAppender()
    asyncio.run(service_with_run(appender).log_batch("r1", [], [{"key": "lr", "value": "0.1"}],
                                                     [{"key": "stage", "value": "dev"}]))
    (event_type, fields), = appender.events
    assert event_type == "metrics_logged" and fields["count"] == 0
    log = EventLog()
    log.run_created("r1")
    log.add(event_type, **fields)
    rows = Materializer(EmptyStateReader()).process(log.messages)
    assert [r[1:3] for r in rows.rows["params"]] == [("lr", "0.1")]
    assert [r[1:3] for r in rows.rows["tags"]] == [("stage", "dev")] and rows.metric_points == 0
