import hashlib
import json
import logging
import math
import threading
from pathlib import Path
from typing import Any, Mapping

import pytest

from trackstream.producer.artifacts import ArtifactUploadError, LocalArtifactStore
from trackstream.producer.client import TrackingClient
from trackstream.schemas.experiment_ids import candidate_experiment_ids
from trackstream.producer.provenance import DISABLE_ENV
from trackstream.schemas import MetricBatch, aggregate_id, default_codec
from trackstream.config import Settings
from trackstream.errors import InvalidInput, ServiceUnavailable


class FakeWriter:
    """Records events; stamps and encodes them like EventWriter, so every event must fit its schema."""

    writer_id = "fake-writer"

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.seqs: dict[str, int] = {}
        self.closed = False
        self.codec = default_codec()

    def append(self, event_type: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        agg = aggregate_id(event_type, fields)
        self.seqs[agg] = self.seqs.get(agg, 0) + 1
        record = {"event_id": "0" * 32, "writer_id": self.writer_id, "seq": self.seqs[agg],
                  "timestamp_ms": 1, **fields}
        self.codec.encode(event_type, record)
        self.events.append((event_type, dict(fields)))
        return record

    def flush(self, timeout: float = 30.0) -> int:
        return 0

    def close(self, timeout: float = 30.0) -> int:
        self.closed = True
        return 0

    def types(self) -> list[str]:
        return [event_type for event_type, _ in self.events]

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [fields for kind, fields in self.events if kind == event_type]

    def points(self) -> list[tuple[str, str, int, float]]:
        out = []
        for fields in self.of("metrics_logged"):
            batch = MetricBatch.from_record(fields)
            out += [(fields["run_id"], k, int(s), float(val))
                    for k, s, val in zip(batch.key_column(), batch.steps, batch.values)]
        return out


class FakeDirectory:
    """Experiments as a tracking server would report them: id -> (name, lifecycle stage)."""

    def __init__(self, experiments: dict[str, tuple[str, str]] | None = None) -> None:
        self.experiments = dict(experiments or {})

    def by_name(self, name: str) -> tuple[str, str] | None:
        return next(((eid, stage) for eid, (n, stage) in self.experiments.items() if n == name), None)

    def stage_of(self, experiment_id: str) -> str | None:
        return self.experiments[experiment_id][1] if experiment_id in self.experiments else None


def server_knowing_seven() -> FakeDirectory:
    """The runs of these tests go to experiment "7", which the server knows."""
    return FakeDirectory({"7": ("seven", "active")})


class FailingStore(LocalArtifactStore):
    """Breaks every upload halfway through the copy to staging."""

    def put_staged(self, local_path, staging_key, progress):
        target = self.staging_path(staging_key)
        self._staging.mkdir(exist_ok=True)
        data = Path(local_path).read_bytes()
        target.write_bytes(data[: len(data) // 2])
        raise ConnectionResetError("connection reset during upload")


@pytest.fixture
def writer() -> FakeWriter:
    return FakeWriter()


@pytest.fixture
def client(writer: FakeWriter, tmp_path: Path):
    c = TrackingClient(Settings(home=tmp_path / "home", kafka_bootstrap="unused"), writer=writer, linger_s=3600,
                       experiments=server_knowing_seven())
    yield c
    c.close()


def tags_of(fields: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in fields["tags"]}


def test_create_run_sends_run_created_with_provenance_and_user_tags_winning(client, writer):
    run_id = client.create_run("7", run_name="base", tags={"team": "vision", "mlflow.user": "alice"})
    (created,) = writer.of("run_created")
    tags = tags_of(created)
    assert created["run_id"] == run_id and created["experiment_id"] == "7" and created["run_name"] == "base"
    assert tags["team"] == "vision" and tags["mlflow.runName"] == "base"
    assert tags["mlflow.user"] == "alice"
    assert tags["mlflow.source.type"] == "LOCAL" and "trackstream.python" in tags
    assert created["user_id"] and created["user_id"] != "alice"
    assert created["source_name"] == tags["mlflow.source.name"]
    assert client.experiment_of(run_id) == "7"


def test_provenance_can_be_turned_off_by_argument_or_environment(client, writer, monkeypatch):
    client.create_run("7", provenance=False, user_id="bob")
    monkeypatch.setenv(DISABLE_ENV, "1")
    client.create_run("7")
    first, second = writer.of("run_created")
    assert tags_of(first) == {} and first["user_id"] == "bob"
    assert tags_of(second) == {} and second["user_id"] == "" and second["source_name"] == ""


def test_parent_run_id_is_also_a_tag(client, writer):
    parent = client.create_run("7", provenance=False)
    child = client.create_run("7", parent_run_id=parent, provenance=False)
    fields = writer.of("run_created")[1]
    assert fields["run_id"] == child and fields["parent_run_id"] == parent
    assert tags_of(fields) == {"mlflow.parentRunId": parent}


def test_event_sequence_of_a_run(client, writer):
    exp = client.create_experiment("seq-test")
    assert exp == candidate_experiment_ids("seq-test")[0]
    run_id = client.create_run(exp, provenance=False)
    client.log_params(run_id, {"lr": 0.1})
    client.log_metric(run_id, "loss", 0.5, step=1)
    client.log_metrics(run_id, {"loss": 0.25, "acc": 1}, step=2)
    client.set_tag(run_id, "stage", "x")
    client.delete_tag(run_id, "stage")
    client.set_terminated(run_id)
    assert writer.types() == ["experiment_created", "run_created", "params_set", "tags_set", "tag_deleted",
                              "metrics_logged", "finalize_requested"]
    assert sorted(writer.points()) == sorted([(run_id, "loss", 1, 0.5), (run_id, "loss", 2, 0.25),
                                              (run_id, "acc", 2, 1.0)])
    assert writer.of("params_set")[0]["params"] == [{"key": "lr", "value": "0.1"}]
    assert writer.of("finalize_requested")[0]["manifest"] == []


def test_bad_metric_raises_before_anything_is_buffered(client, writer):
    run_id = client.create_run(provenance=False)
    with pytest.raises(InvalidInput, match="step"):
        client.log_metric(run_id, "loss", 1.0, step=1.5)
    with pytest.raises(InvalidInput, match="bool"):
        client.log_metric(run_id, "loss", True)
    client.log_metric(run_id, "loss", math.nan)
    client.flush()
    assert len(writer.points()) == 1 and math.isnan(writer.points()[0][3])


def test_a_full_buffer_is_sent_from_log_metric_itself(writer, tmp_path):
    client = TrackingClient(Settings(home=tmp_path, kafka_bootstrap="unused"), writer=writer, linger_s=3600,
                            max_points_per_batch=3, experiments=server_knowing_seven())
    try:
        for step in range(7):
            client.log_metric("r1", "loss", float(step), step)
        assert [len(MetricBatch.from_record(f)) for f in writer.of("metrics_logged")] == [3, 3]
        client.flush()
        assert sorted(s for _, _, s, _ in writer.points()) == list(range(7))
    finally:
        client.close()


def test_terminal_statuses(client, writer):
    run_id = client.create_run(provenance=False)
    client.set_terminated(run_id, "FAILED", end_time_ms=5)
    assert writer.of("run_status_changed") == [{"run_id": run_id, "status": "FAILED", "end_time_ms": 5}]
    with pytest.raises(InvalidInput, match="invalid run status"):
        client.set_terminated(run_id, "DONE")


def test_artifacts_are_committed_and_listed_in_the_finalize_manifest(client, writer, tmp_path):
    run_id = client.create_run("7", provenance=False)
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights" * 100)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("bb")

    record = client.log_artifact(run_id, model, "models")
    client.log_artifacts(run_id, tree, "tree")
    client.log_dict(run_id, {"x": [1, 2]}, "config/params.json")
    client.log_text(run_id, "héllo", "notes.txt")

    paths = [f["path"] for f in writer.of("artifact_committed")]
    assert paths == ["models/model.bin", "tree/a.txt", "tree/sub/b.txt", "config/params.json", "notes.txt"]
    first = writer.of("artifact_committed")[0]
    assert first["sha256"] == hashlib.sha256(b"weights" * 100).hexdigest() == record.sha256
    assert first["size"] == 700 and first["uri"].startswith("file://")
    root = client.settings.artifact_root / "7" / run_id / "artifacts"
    assert json.loads((root / "config" / "params.json").read_text()) == {"x": [1, 2]}
    assert (root / "notes.txt").read_text(encoding="utf-8") == "héllo"

    client.set_terminated(run_id, manifest=[{"path": "from-rank-1/ckpt.pt"}, {"path": "notes.txt", "size": 1}])
    manifest = writer.of("finalize_requested")[0]["manifest"]
    by_path = {m["path"]: m for m in manifest}
    assert set(by_path) == set(paths) | {"from-rank-1/ckpt.pt"}
    assert by_path["from-rank-1/ckpt.pt"] == {"path": "from-rank-1/ckpt.pt", "size": -1, "sha256": ""}
    assert by_path["notes.txt"]["size"] == len("héllo".encode())
    assert client.uploader.manifest(run_id) == []


def test_artifacts_of_a_run_created_elsewhere_need_attach_run(client, writer, tmp_path):
    run_id = "f" * 32
    with pytest.raises(InvalidInput, match="attach_run"):
        client.log_text(run_id, "x", "x.txt")
    client.attach_run(run_id, "42")
    client.log_text(run_id, "x", "x.txt")
    assert (client.settings.artifact_root / "42" / run_id / "artifacts" / "x.txt").read_text() == "x"
    assert writer.types() == ["artifact_committed"]
    with pytest.raises(InvalidInput, match="run_id"):
        client.attach_run("../etc", "1")


def test_an_interrupted_upload_is_never_committed_nor_in_the_manifest(writer, tmp_path):
    store = FailingStore(tmp_path / "store")
    client = TrackingClient(Settings(home=tmp_path, kafka_bootstrap="unused"), writer=writer, linger_s=3600,
                            artifact_store=store, experiments=server_knowing_seven())
    client.uploader.backoff = 0
    try:
        run_id = client.create_run("7", provenance=False)
        with pytest.raises(ArtifactUploadError, match="connection reset"):
            client.log_text(run_id, "data", "broken.txt")
        client.set_terminated(run_id)
        assert "artifact_committed" not in writer.types()
        assert writer.of("finalize_requested")[0]["manifest"] == []
        assert store.list() == []
    finally:
        client.close()


def test_invalid_manifest_and_paths_are_refused(client):
    run_id = client.create_run("7", provenance=False)
    with pytest.raises(InvalidInput, match="manifest entry"):
        client.set_terminated(run_id, manifest=[{"size": 1}])
    with pytest.raises(InvalidInput, match=r"'\.\.'"):
        client.set_terminated(run_id, manifest=[{"path": "../x"}])
    with pytest.raises(InvalidInput, match="only .png"):
        client.log_figure(run_id, object(), "plot.svg")


def test_log_figure_stores_a_real_matplotlib_figure_as_png_and_commits_it(client, writer):
    from matplotlib.figure import Figure  # the object-oriented API: no display, no pyplot state

    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1, 2], [2, 1, 3])
    run_id = client.create_run("7", provenance=False)
    record = client.log_figure(run_id, figure, "plots/loss.png")
    stored = client.uploader.store.open(f"7/{run_id}/artifacts/plots/loss.png").read()
    assert stored.startswith(b"\x89PNG\r\n\x1a\n") and record.size == len(stored)
    assert record.sha256 == hashlib.sha256(stored).hexdigest()
    [committed] = writer.of("artifact_committed")
    assert (committed["path"], committed["size"], committed["sha256"]) == ("plots/loss.png", len(stored), record.sha256)


class SlowMetricsWriter(FakeWriter):
    """Holds the first metrics_logged append until released: a flusher caught mid-send."""

    def __init__(self) -> None:
        super().__init__()
        self.sending, self.release = threading.Event(), threading.Event()

    def append(self, event_type: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        if event_type == "metrics_logged" and not self.sending.is_set():
            self.sending.set()
            assert self.release.wait(10)
        return super().append(event_type, fields)


def test_points_a_flusher_is_sending_are_appended_before_the_run_ends(tmp_path):
    writer = SlowMetricsWriter()
    client = TrackingClient(Settings(home=tmp_path, kafka_bootstrap="unused"), writer=writer, linger_s=3600)
    try:
        run_id = client.create_run(provenance=False)
        client.log_metric(run_id, "loss", 0.5, step=1)
        flusher = threading.Thread(target=client._send_metrics, args=(None,))  # what the linger thread runs
        flusher.start()
        assert writer.sending.wait(10)  # it drained the point and is inside append
        ender = threading.Thread(target=client.set_terminated, args=(run_id, "FINISHED"))
        ender.start()
        ender.join(0.2)  # set_terminated must wait for the flusher, not overtake it
        writer.release.set()
        flusher.join(10)
        ender.join(10)
        assert writer.types() == ["run_created", "metrics_logged", "finalize_requested"]
        assert writer.points() == [(run_id, "loss", 1, 0.5)]
    finally:
        writer.release.set()
        client.close()


def test_close_flushes_but_leaves_an_injected_writer_open(client, writer):
    run_id = client.create_run(provenance=False)
    client.log_metric(run_id, "loss", 1.0)
    assert client.close() == 0
    assert writer.points() == [(run_id, "loss", 0, 1.0)] and not writer.closed
    assert client.close() == 0


def test_log_metrics_validates_every_point_before_buffering_any(client, writer):
    run_id = client.create_run(provenance=False)
    with pytest.raises(InvalidInput, match="bad key"):
        client.log_metrics(run_id, {"good": 1.0, "bad key!": 2.0})
    client.flush()
    assert writer.points() == []


def test_log_inputs_sends_the_first_of_each_dataset_once(client, writer):
    run_id = client.create_run("0")
    sent = client.log_inputs(run_id, [{"name": "a", "digest": "1"}, {"name": "a", "digest": "1"},
                                      {"name": "b", "digest": "2"}], context="training")
    assert [d.name for d in sent] == ["a", "b"]
    (event,) = writer.of("inputs_logged")
    assert [d["name"] for d in event["datasets"]] == ["a", "b"]
    assert client.log_inputs(run_id, []) == [] and len(writer.of("inputs_logged")) == 1


class OfflineDirectory:
    """No tracking server answers."""

    def by_name(self, name: str) -> tuple[str, str] | None:
        raise ServiceUnavailable("no tracking server answers at http://nowhere")

    def stage_of(self, experiment_id: str) -> str | None:
        raise ServiceUnavailable("no tracking server answers at http://nowhere")


@pytest.mark.parametrize("experiments, why", [
    ({}, "no experiment with id=4242 exists"),
    ({"4242": ("gone", "deleted")}, "Current state is deleted"),
])
def test_create_run_refuses_an_experiment_the_server_reports_unknown_or_deleted(client, writer, experiments, why):
    client.experiments = FakeDirectory(experiments)
    with pytest.raises(InvalidInput, match=f"Cannot create a run in experiment 4242: .*{why}"):
        client.create_run("4242", provenance=False)
    assert writer.of("run_created") == []


def test_create_run_accepts_an_experiment_this_client_created_before_the_server_has_it(client, writer):
    experiment_id = client.create_experiment("fresh")
    assert client.experiments.stage_of(experiment_id) is None  # not materialized yet
    client.create_run(experiment_id, provenance=False)
    assert [f["experiment_id"] for f in writer.of("run_created")] == [experiment_id]


def test_create_run_refuses_an_experiment_this_client_created_once_the_server_reports_it_deleted(client, writer):
    experiment_id = client.create_experiment("short-lived")
    client.experiments.experiments[experiment_id] = ("short-lived", "deleted")
    with pytest.raises(InvalidInput, match=f"experiment {experiment_id}"):
        client.create_run(experiment_id, provenance=False)


def test_the_default_experiment_counts_as_existing_until_the_server_reports_it_deleted(client, writer):
    client.create_run("0", provenance=False)
    client.experiments.experiments["0"] = ("Default", "deleted")
    with pytest.raises(InvalidInput, match="experiment 0"):
        client.create_run("0", provenance=False)
    assert len(writer.of("run_created")) == 1


def test_without_a_server_runs_are_created_unchecked_and_the_client_warns_once(client, writer, caplog):
    client.experiments = OfflineDirectory()
    with caplog.at_level(logging.WARNING, logger="trackstream"):
        experiment_id = client.create_experiment("offline")
        client.create_run(experiment_id, provenance=False)
        client.create_run("4242", provenance=False)
    assert [f["experiment_id"] for f in writer.of("run_created")] == [experiment_id, "4242"]
    warnings = [r.getMessage() for r in caplog.records if "no tracking server answers" in r.getMessage()]
    assert len(warnings) == 1 and "without checking that their experiment exists and is active" in warnings[0]
def model_dir(tmp_path: Path) -> Path:
    saved = tmp_path / "saved-model"
    (saved / "data").mkdir(parents=True)
    (saved / "MLmodel").write_text("flavors: {}\n")
    (saved / "data" / "weights.bin").write_bytes(b"\x00\x01" * 100)
    return saved


def test_log_model_commits_every_file_then_finalizes_ready_with_them(client, writer, tmp_path):
    run_id = client.create_run("7", provenance=False)
    record = client.log_model(run_id, model_dir(tmp_path), name="net", params={"lr": 0.1}, tags={"team": "a"})
    model_events = [t for t in writer.types() if t.startswith(("logged_model", "run_models"))]
    assert model_events == ["logged_model_created", "run_models_linked", "logged_model_artifact_committed",
                            "logged_model_artifact_committed", "logged_model_finalized"]
    created = writer.of("logged_model_created")[0]
    assert (created["model_id"], created["experiment_id"], created["source_run_id"], created["params"]) == \
        (record.model_id, "7", run_id, [{"key": "lr", "value": "0.1"}])
    assert writer.of("run_models_linked")[0]["models"] == [{"model_id": record.model_id, "step": 0}]
    finalized = writer.of("logged_model_finalized")[0]
    assert (finalized["status"], finalized["manifest"]) == ("READY", ["MLmodel", "data/weights.bin"])
    assert record.files == ("MLmodel", "data/weights.bin") and record.model_uri == f"models:/{record.model_id}"
    stored = tmp_path / "home" / "artifacts" / "7" / "models" / record.model_id / "artifacts" / "data" / "weights.bin"
    assert stored.read_bytes() == b"\x00\x01" * 100


def test_log_model_whose_upload_fails_is_finalized_failed_and_raises(writer, tmp_path):
    client = TrackingClient(Settings(home=tmp_path, kafka_bootstrap="unused"), writer=writer, linger_s=3600,
                            artifact_store=FailingStore(tmp_path / "store"))
    client.model_uploader.backoff = 0
    try:
        run_id = client.create_run("7", provenance=False)
        with pytest.raises(ArtifactUploadError, match="connection reset"):
            client.log_model(run_id, model_dir(tmp_path))
        assert "logged_model_artifact_committed" not in writer.types()
        assert writer.of("logged_model_finalized")[0] == {
            "model_id": writer.of("logged_model_created")[0]["model_id"], "status": "FAILED", "manifest": []}
    finally:
        client.close()


def test_log_model_refuses_bad_names_and_empty_directories(client, writer, tmp_path):
    run_id = client.create_run("7", provenance=False)
    with pytest.raises(InvalidInput, match="Invalid model name"):
        client.log_model(run_id, model_dir(tmp_path), name="a.b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="holds no files"):
        client.log_model(run_id, tmp_path / "empty")
    assert "logged_model_created" not in writer.types()
