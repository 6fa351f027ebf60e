"""server.experiment_search: MLflow's search_experiments grammar (the runs-search parser with the
experiment vocabulary) and the SQL it compiles to (no engine needed)."""

from __future__ import annotations

import pytest

from trackstream.errors import InvalidInput
from trackstream.server.experiment_search import (EXPERIMENT_VOCABULARY, build_experiment_search_query,
                                                  parse_experiment_order_by)
from trackstream.server.search import Comparison, OrderTerm, encode_page_token, parse_filter

EVIL = "'; DROP TABLE x; --"
QUOTED = EVIL.replace("'", "''")


@pytest.mark.parametrize("filter_string, expected", [
    ("name = 'a'", [Comparison("attribute", "name", "=", "a")]),
    ("attribute.name LIKE 'a%'", [Comparison("attribute", "name", "LIKE", "a%")]),
    ("attributes.name ILIKE '%A%'", [Comparison("attribute", "name", "ILIKE", "%A%")]),
    ("name != 'a' AND tags.team = 'core'",
     [Comparison("attribute", "name", "!=", "a"), Comparison("tag", "team", "=", "core")]),
    ("tags.`my key` ILIKE '%x%'", [Comparison("tag", "my key", "ILIKE", "%x%")]),
    ("tags.owner IS NULL", [Comparison("tag", "owner", "IS NULL", None)]),
    ("creation_time >= 1700000000000 and last_update_time < 5",
     [Comparison("attribute", "creation_time", ">=", 1.7e12), Comparison("attribute", "last_update_time", "<", 5.0)]),
    ("experiment_id IN ('1', '2')", [Comparison("attribute", "experiment_id", "IN", ("1", "2"))]),
])
def test_experiment_filters_parse(filter_string: str, expected: list[Comparison]) -> None:
    assert parse_filter(filter_string, EXPERIMENT_VOCABULARY) == expected


@pytest.mark.parametrize("filter_string, message", [
    ("owner = 'x'", "Invalid attribute key 'owner'"),
    ("metrics.acc > 1", "Invalid entity type 'metrics'"),
    ("params.lr = '1'", "Invalid entity type 'params'"),
    ("creation_time LIKE '1%'", "Invalid comparator 'LIKE'"),
    ("name > 'a'", "Invalid comparator '>'"),
    ("name = 'a' OR name = 'b'", "Invalid clause(s)"),
    ("name = ", "Expected a quoted string"),
])
def test_bad_experiment_filters_are_refused_naming_the_problem(filter_string: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_filter(filter_string, EXPERIMENT_VOCABULARY)
    assert message in str(info.value) and filter_string.strip() in str(info.value)


def test_order_by_takes_the_four_attributes_and_refuses_tags() -> None:
    assert parse_experiment_order_by(["name", "experiment_id DESC", "creation_time ASC", "last_update_time desc"]) == [
        OrderTerm("attribute", "name"), OrderTerm("attribute", "experiment_id", False),
        OrderTerm("attribute", "creation_time"), OrderTerm("attribute", "last_update_time", False)]
    with pytest.raises(InvalidInput, match="tags.team"):
        parse_experiment_order_by(["tags.team"])
    with pytest.raises(InvalidInput, match="Invalid ordering key"):
        parse_experiment_order_by(["name UP"])
    with pytest.raises(InvalidInput, match="expected a list of strings"):
        parse_experiment_order_by("name")


def test_sql_binds_every_value_and_orders_like_mlflow() -> None:
    sql, params = build_experiment_search_query(
        "trackstream", "ACTIVE_ONLY", f"name LIKE '{QUOTED}' AND tags.`{EVIL}` = '{QUOTED}' AND creation_time > 5",
        ["name DESC"], 10, encode_page_token(20))
    assert EVIL not in sql and list(params.values()).count(EVIL) == 3
    assert "ORDER BY order_0 DESC NULLS LAST, e.creation_time DESC, toUInt64OrZero(e.experiment_id) ASC" in sql
    assert params["limit"] == 11 and params["offset"] == 20
    default_sql, _ = build_experiment_search_query("trackstream", "ALL", None, None, 10, None)
    assert "ORDER BY e.creation_time DESC, toUInt64OrZero(e.experiment_id) ASC" in default_sql


def test_ordering_by_creation_time_or_id_replaces_the_default_terms() -> None:
    sql, _ = build_experiment_search_query("trackstream", "ALL", None, ["creation_time ASC", "experiment_id DESC"],
                                           10, None)
    assert "ORDER BY order_0 ASC NULLS LAST, order_1 DESC NULLS LAST\n" in sql


@pytest.mark.parametrize("view_type, max_results, token, message", [
    ("SOME", 10, None, "view_type"),
    ("ALL", 0, None, "max_results"),
    ("ALL", 50_001, None, "max_results"),
    ("ALL", 10, "not-a-token", "page token"),
])
def test_bad_paging_and_view_type_are_refused(view_type: str, max_results: int, token: str | None,
                                              message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build_experiment_search_query("trackstream", view_type, None, None, max_results, token)
