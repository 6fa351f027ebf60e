"""producer.inputs: dataset inputs from what callers hand in, validated with MLflow's limits."""

from __future__ import annotations

import re

import pytest

from trackstream.errors import InvalidInput
from trackstream.producer.inputs import (
    CONTEXT_TAG,
    DatasetInput,
    dataset_input,
    dataset_input_from_json,
    dedupe_dataset_inputs,
)


class FakeSource:
    """The shape of an ``mlflow.data`` DatasetSource: a type and a JSON description."""

    def _get_source_type(self) -> str:
        return "http"

    def to_json(self) -> str:
        return '{"url": "https://example.org/iris.csv"}'


class AttributeDataset:
    name, digest, schema, profile = "iris", "1a2b3c4d", None, {"num_rows": 150}
    source = FakeSource()


class DictDataset:
    """Like mlflow.data's datasets: ``to_dict()`` gives every field as MLflow stores it."""

    def to_dict(self) -> dict[str, str]:
        return {"name": "wine", "digest": "ffff0000", "source_type": "local", "source": '{"uri": "/data"}',
                "schema": '{"mlflow_colspec": []}', "profile": '{"num_rows": 3}'}


def test_an_mlflow_style_dataset_is_read_through_to_dict_with_context_as_a_tag():
    item = dataset_input(DictDataset(), context="training", tags={"split": "a"})
    assert item == DatasetInput("wine", "ffff0000", "local", '{"uri": "/data"}', '{"mlflow_colspec": []}',
                                '{"num_rows": 3}', ((CONTEXT_TAG, "training"), ("split", "a")))
    assert item.context == "training"


def test_attribute_objects_get_source_type_and_json_from_their_source():
    item = dataset_input(AttributeDataset())
    assert (item.source_type, item.source) == ("http", '{"url": "https://example.org/iris.csv"}')
    assert item.profile == '{"num_rows": 150}' and item.tags == ()


def test_keyword_fields_override_and_a_digest_is_derived_when_missing():
    item = dataset_input(name="mnist", source="s3://bucket/mnist", context="evaluation")
    again = dataset_input(name="mnist", source="s3://bucket/mnist")
    other = dataset_input(name="mnist", source="s3://bucket/mnist-v2")
    assert len(item.digest) == 8 and item.digest == again.digest != other.digest
    assert item.source_type == "unknown"
    assert dataset_input(DictDataset(), name="renamed").name == "renamed"


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="x" * 501, digest="d"), "dataset name exceeds the maximum length of 500"),
    (dict(name="n", digest="d" * 37), "dataset digest exceeds the maximum length of 36"),
    (dict(name="n", digest="d", source="s" * 65536), "dataset source exceeds the maximum length of 65535"),
    (dict(digest="d"), "dataset name is required"),
    (dict(name=3, digest="d"), "dataset name must be a string, got int"),
    (dict(name="n", digest="d", colour="red"), "unknown field(s) ['colour']"),
])
def test_bad_fields_are_named(kwargs, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        dataset_input(**kwargs)


def test_input_tag_limits():
    with pytest.raises(InvalidInput, match="value of input tag 'mlflow.data.context' exceeds the maximum length of 500"):
        dataset_input(name="n", digest="d", context="c" * 501)
    with pytest.raises(InvalidInput, match="input tag key exceeds the maximum length of 255"):
        dataset_input(name="n", digest="d", tags={"k" * 256: "v"})


def test_rest_items_and_their_errors():
    item = dataset_input_from_json({"dataset": {"name": "n", "digest": "d", "source_type": "code", "source": "{}",
                                                "schema": ""},
                                    "tags": [{"key": CONTEXT_TAG, "value": "training"}]})
    assert item.schema is None and item.context == "training"
    with pytest.raises(InvalidInput, match="dataset source_type is required"):
        dataset_input_from_json({"dataset": {"name": "n", "digest": "d", "source": "{}"}})
    with pytest.raises(InvalidInput, match="each item needs a 'dataset' object"):
        dataset_input_from_json({"tags": []})


def test_dedupe_keeps_the_first_input_of_a_name_and_digest_and_remembers_seen_ones():
    first = dataset_input(name="a", digest="1", context="training")
    later = dataset_input(name="a", digest="1", context="evaluation")
    other = dataset_input(name="a", digest="2")
    seen: set[tuple[str, str]] = set()
    assert dedupe_dataset_inputs([first, later, other], seen) == [first, other]
    assert dedupe_dataset_inputs([later], seen) == []


def test_a_real_mlflow_dataset_gives_the_fields_mlflow_itself_would_send():
    mlflow_data = pytest.importorskip("mlflow.data")
    np = pytest.importorskip("numpy")
    dataset = mlflow_data.from_numpy(np.arange(6.0).reshape(3, 2), source="s3://bucket/x.npy", name="x")
    entity = dataset._to_mlflow_entity()
    item = dataset_input(dataset, context="training")
    assert (item.name, item.digest, item.source_type, item.source, item.schema, item.profile) == (
        entity.name, entity.digest, entity.source_type, entity.source, entity.schema, entity.profile)
