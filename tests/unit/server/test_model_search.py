"""search_logged_models: MLflow's filter grammar with the logged-model attributes, compiled to SQL."""

import pytest

from trackstream.errors import InvalidInput
from trackstream.server.model_search import (MODEL_VOCABULARY, DatasetFilter, build_logged_model_search_query,
                                             parse_datasets, parse_model_order_by)
from trackstream.server.search import Comparison, parse_filter


def test_model_attributes_metrics_params_and_tags_parse():
    assert parse_filter("name = 'clf' AND metrics.accuracy > 0.9 AND creation_time >= 5 AND params.C != '1'",
                        MODEL_VOCABULARY) == [
        Comparison("attribute", "name", "=", "clf"), Comparison("metric", "accuracy", ">", 0.9),
        Comparison("attribute", "creation_timestamp", ">=", 5.0), Comparison("param", "C", "!=", "1")]


@pytest.mark.parametrize("bad, message", [
    ("run_name = 'x'", "Invalid attribute key 'run_name'"),
    ("creation_timestamp > 'x'", "Expected numeric value type for numeric attribute: creation_timestamp"),
    ("model_id IN ('a')", "Only the no attribute supports"),
    ("name = 'a' OR name = 'b'", "Invalid clause"),
])
def test_bad_model_filters_name_the_problem(bad, message):
    with pytest.raises(InvalidInput, match=message):
        parse_filter(bad, MODEL_VOCABULARY)


def test_order_by_items_and_datasets_are_checked():
    order = parse_model_order_by([{"field_name": "metrics.acc", "ascending": False, "dataset_name": "iris"}])
    assert (order[0].term.key, order[0].term.ascending, order[0].dataset) == ("acc", False, DatasetFilter("iris"))
    with pytest.raises(InvalidInput, match="field_name is required"):
        parse_model_order_by([{"ascending": True}])
    with pytest.raises(InvalidInput, match="dataset_digest needs a dataset_name"):
        parse_datasets([{"dataset_digest": "d"}])
    with pytest.raises(InvalidInput, match="dataset_name is required"):
        parse_datasets([{}])


def test_the_query_binds_every_user_value_and_restricts_metrics_to_the_datasets():
    sql, params = build_logged_model_search_query(
        "db", ["1", "2"], "metrics.acc > 0.5 AND tags.team = 'x''y' AND status = 'READY'",
        [DatasetFilter("iris", "d1")], parse_model_order_by([{"field_name": "creation_timestamp"}]), 10, None)
    assert "x'y" not in sql and "iris" not in sql and "READY" not in sql
    assert {"x'y", "iris", "d1", "READY", "acc", "team"} <= {v for v in params.values() if isinstance(v, str)}
    assert "dataset_name = {p" in sql and "m.lifecycle_stage = 'active'" in sql
    assert sql.index("order_0 ASC") < sql.index("m.model_id ASC") and "creation_timestamp_ms DESC" not in sql
    assert params["limit"] == 11
