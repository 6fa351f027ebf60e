"""The plugin's pure parts: tracking URI -> gateway URL, artifact locations through the gateway's
proxy, MLflow's run statuses."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mlflow")

from mlflow.entities import RunStatus  # noqa: E402

from trackstream.errors import InvalidInput  # noqa: E402
from trackstream.mlflow_store import gateway_url, proxied_artifact_uri, status_name  # noqa: E402


def test_the_tracking_uri_names_the_gateway():
    assert gateway_url("trackstream://10.0.0.5:5055") == "http://10.0.0.5:5055"
    assert gateway_url("trackstream://host:80/prefix/") == "http://host:80/prefix"


@pytest.mark.parametrize("uri", ["http://host:5055", "trackstream://", "trackstream:/path", "host:5055"])
def test_anything_but_a_trackstream_uri_with_a_host_is_refused(uri):
    with pytest.raises(InvalidInput, match="trackstream://host:port"):
        gateway_url(uri)


def test_mlflow_artifacts_locations_point_at_the_gateway_proxy_and_others_stay():
    base = "http://h:1"
    assert proxied_artifact_uri("mlflow-artifacts:/7/r1/artifacts", base) == \
        "http://h:1/api/2.0/mlflow-artifacts/artifacts/7/r1/artifacts"
    assert proxied_artifact_uri("mlflow-artifacts://other:9/7/models/m1/artifacts", base) == \
        "http://h:1/api/2.0/mlflow-artifacts/artifacts/7/models/m1/artifacts"
    assert proxied_artifact_uri("s3://bucket/x", base) == "s3://bucket/x"
    assert proxied_artifact_uri(None, base) is None


def test_run_statuses_arrive_as_ints_or_names():
    assert status_name(RunStatus.from_string("KILLED")) == "KILLED"
    assert status_name("FINISHED") == "FINISHED" and status_name(None) is None


@pytest.mark.parametrize("first", ["trackstream.mlflow_store", "mlflow"])
def test_the_entry_points_resolve_whichever_module_is_imported_first(first):
    """mlflow loads entry points during ``import mlflow``; importing the store module first once
    left it half-initialised and the scheme unregistered."""
    code = textwrap.dedent(f"""
        import {first}
        from mlflow import MlflowClient
        from mlflow.tracking.request_auth.registry import fetch_auth
        from trackstream.mlflow_plugin import AUTH_NAME, WrittenMarksAuth
        from trackstream.mlflow_store import TrackstreamStore
        store = MlflowClient(tracking_uri="trackstream://127.0.0.1:9")._tracking_client.store
        assert isinstance(store, TrackstreamStore), type(store)
        assert store.get_host_creds().auth == AUTH_NAME
        assert isinstance(fetch_auth(AUTH_NAME), WrittenMarksAuth)
    """)
    result = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


class FakeClient:
    """What the marks need of a TrackingClient: flush, and the writer's topic and offsets."""

    class writer:  # noqa: N801
        topic = "events.a"

        @staticmethod
        def acknowledged_offsets():
            return {1: 9}

    @staticmethod
    def flush(timeout):
        return 0


class Request:
    def __init__(self, url):
        self.url = url
        self.headers = {}


def test_the_auth_hook_sends_a_stores_marks_only_to_that_stores_gateway():
    from trackstream.mlflow_plugin import WrittenMarksAuth
    from trackstream.mlflow_store import TrackstreamStore

    store = TrackstreamStore("trackstream://10.1.1.1:5055", client=FakeClient())
    quiet = TrackstreamStore("trackstream://10.1.1.2:5055")  # has not written: no marks
    hook = WrittenMarksAuth()
    own = hook(Request("http://10.1.1.1:5055/api/2.0/mlflow/runs/get?run_id=x"))
    assert own.headers == {"X-Trackstream-Written": "events.a;1:9"}
    assert hook(Request("http://10.1.1.1:50551/api/2.0/mlflow/runs/get")).headers == {}  # another port
    assert hook(Request("http://10.1.1.2:5055/api/2.0/mlflow/runs/get")).headers == {}
    assert hook(Request("http://elsewhere:5000/api/2.0/mlflow/runs/get")).headers == {}
    del quiet
