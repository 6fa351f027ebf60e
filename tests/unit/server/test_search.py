"""server.search: MLflow's search_runs grammar and the SQL it compiles to (no engine needed)."""

from __future__ import annotations

import base64
import re

import pytest

from trackstream.server.search import (
    Comparison,
    OrderTerm,
    build_search_query,
    decode_page_token,
    encode_page_token,
    paginate,
    parse_filter,
    parse_order_by,
)
from trackstream.errors import InvalidInput, StorageError

EVIL = "'; DROP TABLE x; --"


def rejected(filter_string: str) -> str:
    with pytest.raises(InvalidInput) as info:
        parse_filter(filter_string)
    return str(info.value)


@pytest.mark.parametrize("filter_string, expected", [
    ("metrics.acc > 0.9 and params.lr = '0.1'",
     [Comparison("metric", "acc", ">", 0.9), Comparison("param", "lr", "=", "0.1")]),
    ("tags.\"mlflow.runName\" LIKE 'r%'", [Comparison("tag", "mlflow.runName", "LIKE", "r%")]),
    ("tags.`my key` ILIKE '%x%'", [Comparison("tag", "my key", "ILIKE", "%x%")]),
    ("attributes.run_id IN ('a','b')", [Comparison("attribute", "run_id", "IN", ("a", "b"))]),
    ("params.x IS NULL", [Comparison("param", "x", "IS NULL", None)]),
    ("datasets.name = 'iris'", [Comparison("dataset", "name", "=", "iris")]),
    ("dataset.digest != 'abc'", [Comparison("dataset", "digest", "!=", "abc")]),
    ("datasets.context IN ('training', 'eval')", [Comparison("dataset", "context", "IN", ("training", "eval"))]),
    ("datasets.name NOT IN ('a')", [Comparison("dataset", "name", "NOT IN", ("a",))]),
    ("tags.mlflow.parentRunId IN ('a', 'b')", [Comparison("tag", "mlflow.parentRunId", "IN", ("a", "b"))]),
    ("tags.team NOT IN ('x')", [Comparison("tag", "team", "NOT IN", ("x",))]),
    ("datasets.name ILIKE 'ir%'", [Comparison("dataset", "name", "ILIKE", "ir%")]),
    ("attributes.start_time >= 1700000000000", [Comparison("attribute", "start_time", ">=", 1700000000000.0)]),
    ("run_name = 'r1'", [Comparison("attribute", "run_name", "=", "r1")]),
    ("metrics.`a b` < 1", [Comparison("metric", "a b", "<", 1.0)]),
])
def test_accepts_the_documented_examples(filter_string, expected):
    assert parse_filter(filter_string) == expected


@pytest.mark.parametrize("prefix, kind", [
    ("metric", "metric"), ("metrics", "metric"),
    ("param", "param"), ("params", "param"), ("parameter", "param"), ("parameters", "param"),
    ("tag", "tag"), ("tags", "tag"),
])
def test_entity_type_aliases(prefix, kind):
    value = "1" if kind == "metric" else "'1'"
    assert parse_filter(f"{prefix}.k = {value}")[0].kind == kind


@pytest.mark.parametrize("identifier", ["attributes.status", "attribute.status", "attr.status", "run.status",
                                        "status"])
def test_attribute_prefixes_and_no_prefix(identifier):
    assert parse_filter(f"{identifier} = 'FINISHED'") == [Comparison("attribute", "status", "=", "FINISHED")]


@pytest.mark.parametrize("identifier, key", [
    ("created", "start_time"), ("Created", "start_time"), ("attributes.created", "start_time"),
    ('"run name"', "run_name"), ("`Run name`", "run_name"), ("attributes.`Run Name`", "run_name"),
])
def test_attribute_key_aliases(identifier, key):
    value = "5" if key == "start_time" else "'x'"
    assert parse_filter(f"{identifier} = {value}")[0].key == key


def test_keys_quoted_or_dotted():
    assert [c.key for c in parse_filter(
        "metrics.val.loss < 1 and tags.\"a.b c\" = 'x' and params.`k-1/2:3` = 'y' and metrics.a-b/c:d > 0")] == \
        ["val.loss", "a.b c", "k-1/2:3", "a-b/c:d"]


def test_keywords_are_case_insensitive():
    assert parse_filter("params.a like 'x' AnD tags.b iLiKe 'y' and run_id not in ('r') AND params.c is not null") \
        == [Comparison("param", "a", "LIKE", "x"), Comparison("tag", "b", "ILIKE", "y"),
            Comparison("attribute", "run_id", "NOT IN", ("r",)), Comparison("param", "c", "IS NOT NULL", None)]


def test_values_quotes_and_numbers():
    assert [c.value for c in parse_filter(
        "params.a = 'it''s' and params.b = 'it\\'s' and params.c = \"dq\" and params.d = 'C:\\temp' "
        "and metrics.e > -1.5e-3 and metrics.f < .5 and created > 17")] == \
        ["it's", "it's", "dq", "C:\\temp", -0.0015, 0.5, 17.0]


def test_comparisons_remember_where_they_start():
    assert [c.position for c in parse_filter("metrics.a > 1 AND  params.b = 'x'")] == [0, 19]


@pytest.mark.parametrize("filter_string", ["", "   ", None])
def test_empty_filter_matches_everything(filter_string):
    assert parse_filter(filter_string) == []


@pytest.mark.parametrize("filter_string, position, message", [
    ("metrics.a > 1 or metrics.b > 2", 14, "Invalid clause(s) in filter string: 'or'"),
    ("params.a LIKE 'x' AND (params.b = 'y')", 22, "Invalid clause(s) in filter string: '(params.b = 'y')'"),
    ("(metrics.a > 1)", 0, "Invalid clause(s) in filter string: '(metrics.a > 1)'"),
    ("params.a = 'x'; DROP TABLE runs", 14, "Search filter contained multiple expression"),
    ("metrics.acc > '1'", 14, "Expected numeric value type for metric. Found '1'"),
    ("metrics.acc > 'x'", 14, "Found 'x'"),
    ("params.lr = 0.1", 12, "Expected a quoted string value for parameter (e.g. 'my-value'). Got value 0.1"),
    ("tags.t = 1", 9, "Expected a quoted string value for tag"),
    ("status = `FINISHED`", 9, "Expected a quoted string value for attributes"),
    ("start_time > '5'", 13, "Expected numeric value type for numeric attribute: start_time"),
    ("metrics.acc IS NULL", 12, "IS NULL / IS NOT NULL is only supported for tags and params"),
    ("run_name IS NOT NULL", 9, "IS NULL / IS NOT NULL is only supported for tags and params"),
    ("attributes.status IN ('FINISHED','FAILED')", 18, "Only the 'run_id' attribute and the dataset 'name', 'digest' "
                                                       "and 'context' support comparison with a list"),
    ("params.p IN ('a')", 9, "Invalid comparator 'IN'"),
    ("metrics.m LIKE 'a'", 10, "Invalid comparator 'LIKE'"),
    ("start_time LIKE '1%'", 11, "Invalid comparator 'LIKE'"),
    ("metrics.m <> 1", 10, "Invalid comparator '<>'"),
    ("attributes.experiment_id = '1'", 0, "Invalid attribute key 'experiment_id' specified"),
    ("lifecycle_stage = 'deleted'", 0, "Invalid attribute key 'lifecycle_stage' specified"),
    ("foo.bar = 'x'", 0, "Invalid entity type 'foo'"),
    ("Metrics.acc > 1", 0, "Invalid entity type 'Metrics'"),
    ("datasets.source = 'x'", 0, "Invalid dataset key 'source' specified"),
    ("datasets.name > 'x'", 14, "Invalid comparator '>'"),
    ("datasets.name = 1", 16, "Expected a quoted string value for dataset attributes"),
    ("datasets.name IS NULL", 14, "IS NULL / IS NOT NULL is only supported for tags and params"),
    ("metrics.acc > 0.9 AND", 21, "got end of input"),
    ("AND metrics.acc > 0.9", 0, "expected an identifier"),
    ("metrics.acc > 0.9 metrics.b > 1", 18, "expected AND"),
    ("metrics.acc 0.9", 12, "expected a comparison operator"),
    ("params.a = 'open", 11, "unterminated"),
    ("metrics.a > 1x", 12, "invalid number '1x'"),
    ("metrics. > 1", 8, "expected a key"),
    ("params.x IS 'a'", 12, "expected NULL after IS"),
    ("params.x NOT LIKE 'a'", 13, "expected IN after NOT"),
    ("run_id IN ()", 11, "expected a quoted string in the list"),
    ("run_id IN ('a' 'b')", 15, "expected ',' or ')'"),
    ("run_id IN 'a'", 10, "expected a parenthesised list"),
    ("params.a LIKE 'x\\\\'", 14, "ends with an unescaped backslash"),
    ("params.a = 'x' && params.b = 'y'", 15, "unexpected character '&'"),
])
def test_rejections_name_the_problem_and_where(filter_string, position, message):
    text = rejected(filter_string)
    assert text.startswith(f'Invalid filter "{filter_string}" at position {position}: '), text
    assert message in text


def test_long_filters_are_shortened_in_messages():
    text = rejected("metrics.a > 1 and " * 30 + "params.x = 1")
    assert "…" in text and "position 551" in text and len(text) < 400


def test_order_by_parsing():
    assert parse_order_by(["metrics.x DESC", "params.p", "tags.`a b` asc", "attributes.end_time", "created desc"]) \
        == [OrderTerm("metric", "x", False), OrderTerm("param", "p", True), OrderTerm("tag", "a b", True),
            OrderTerm("attribute", "end_time", True), OrderTerm("attribute", "start_time", False)]
    assert parse_order_by([]) == parse_order_by(None) == []


@pytest.mark.parametrize("items, message", [
    (["metrics.x up"], "Invalid ordering key in order_by clause 'metrics.x up'"),
    (["metrics.x desc more"], "Could not be parsed"),
    ([""], "Invalid order_by clause ''"),
    (["start_time", "created DESC"], "`order_by` contains duplicate fields"),
    (["experiment_id"], "Invalid attribute key 'experiment_id'"),
    (["datasets.name"], "Ordering by datasets (datasets.name) is not supported"),
    (["metrics.x > 1"], "Invalid ordering key"),
])
def test_order_by_rejections(items, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        parse_order_by(items)


def test_page_tokens_use_mlflows_format():
    assert encode_page_token(1000) == "eyJvZmZzZXQiOiAxMDAwfQ=="
    assert decode_page_token(encode_page_token(1234)) == 1234
    assert decode_page_token(None) == decode_page_token("") == 0


@pytest.mark.parametrize("token", [
    "not base64!", "e30", base64.b64encode(b"not json").decode(), base64.b64encode(b"[1]").decode(),
    base64.b64encode(b"{}").decode(), base64.b64encode(b'{"offset": -1}').decode(),
    base64.b64encode(b'{"offset": true}').decode(), base64.b64encode(b'{"offset": "10"}').decode(),
    base64.b64encode(b'{"offset": 1e99}').decode(), "QQ==" * 1000,
])
def test_bad_page_tokens(token):
    with pytest.raises(InvalidInput, match="^Invalid page token"):
        decode_page_token(token)


def test_paginate_cuts_the_extra_row_into_a_token():
    assert paginate([1, 2, 3], 3, None) == ([1, 2, 3], None)
    page, token = paginate([1, 2, 3, 4], 3, encode_page_token(6))
    assert page == [1, 2, 3] and decode_page_token(token) == 9


def build(filter_string="", order_by=None, max_results=100, page_token=None, view="ACTIVE_ONLY"):
    return build_search_query("trackstream", ["1"], filter_string, order_by or [], view, max_results, page_token)


@pytest.mark.parametrize("max_results, message", [
    (50001, "Invalid value 50001 for parameter 'max_results' supplied. It must be at most 50000"),
    (0, "Invalid value 0 for parameter 'max_results' supplied. It must be a positive integer"),
    (True, "It must be a positive integer"),
])
def test_max_results_limits(max_results, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        build(max_results=max_results)


def test_max_results_at_the_limit_queries_one_extra_row():
    sql, params = build(max_results=50000, page_token=encode_page_token(50000))
    assert params["limit"] == 50001 and params["offset"] == 50000
    assert "LIMIT {limit:UInt64} OFFSET {offset:UInt64}" in sql


def test_run_view_type_and_database_are_checked():
    with pytest.raises(InvalidInput, match="run_view_type"):
        build(view="EVERYTHING")
    with pytest.raises(StorageError):
        build_search_query("db; DROP TABLE x", ["1"], "", [], "ALL", 10, None)
    assert "lifecycle_stage" not in build(view="ALL")[0].split("WHERE", 2)[2]
    assert ["deleted"] in build(view="DELETED_ONLY")[1].values()


@pytest.mark.parametrize("filter_string, order_by", [
    (f"params.`{EVIL}` = 'a'", []),
    (f"params.a = '{EVIL.replace(chr(39), chr(39) * 2)}'", []),
    (f"tags.\"{EVIL}\" LIKE '{EVIL.replace(chr(39), chr(39) * 2)}'", []),
    (f"metrics.`{EVIL}` > 1 and attributes.status = '{EVIL.replace(chr(39), chr(39) * 2)}'", []),
    (f"run_id IN ('{EVIL.replace(chr(39), chr(39) * 2)}', 'b') and params.`{EVIL}` IS NULL", []),
    ("", [f"metrics.`{EVIL}` DESC", f"params.`{EVIL}`", f"tags.`{EVIL}` ASC"]),
])
def test_user_text_never_reaches_the_sql(filter_string, order_by):
    sql, params = build(filter_string, order_by)
    assert "DROP" not in sql and EVIL not in sql
    bound = [v for value in params.values() for v in (value if isinstance(value, list) else [value])]
    assert EVIL in bound


def test_sql_text_depends_only_on_the_shape_of_the_search():
    first = build("params.a = 'x' and metrics.m > 1 and tags.t LIKE 'q%'", ["metrics.m DESC"])
    second = build("params.zz = 'other' and metrics.n > 2 and tags.u LIKE '%'", ["metrics.n DESC"])
    assert first[0] == second[0] and first[1] != second[1]


def test_a_key_used_twice_is_joined_once():
    sql, _ = build("metrics.m > 1 and metrics.m < 5", ["metrics.m DESC", "params.p"])
    assert sql.count("latest_metrics_by_key FINAL") == 1 and sql.count(".params_by_key") == 1


def test_default_order_and_tie_breaker():
    assert build()[0].split("ORDER BY ")[-1].startswith("r.start_time DESC, r.run_id ASC\n")
    ordered = build(order_by=["start_time ASC"])[0].split("ORDER BY ")[-1]
    assert ordered.startswith("order_0 ASC NULLS LAST, r.run_id ASC\n")
    assert build(order_by=["run_id DESC"])[0].split("ORDER BY ")[-1].startswith(
        "order_0 DESC NULLS LAST, r.start_time DESC\n")


def test_a_tag_list_filter_compares_the_latest_tag_value_with_a_bound_array():
    sql, params = build_search_query("db", ["1"], "tags.mlflow.parentRunId IN ('a', 'b')", [], "ACTIVE_ONLY", 10, None)
    assert re.search(r"t0\.v IN \{p\d+:Array\(String\)\}", sql)
    assert ["a", "b"] in params.values() and "mlflow.parentRunId" in params.values()


def test_a_search_as_of_a_cut_reads_every_table_through_the_cut():
    cut = "src_offset <= {cut_o:Int64}"
    sql, _ = build_search_query("db", ["1"], "params.a = 'x' AND metrics.m > 1 AND tags.t = 'y' AND "
                                "datasets.name = 'd'", ["metrics.m DESC"], "ACTIVE_ONLY", 10, None, cut)
    assert sql.count(cut) == 5  # runs, param, metric, tag, dataset inputs
    assert "latest_metrics" not in sql  # the rollup table has no cut; the metric rows do
    assert "_by_key" not in sql and "runs_current" not in sql  # nor have the search layout's tables
    assert build_search_query("db", ["1"], "params.a = 'x'", [], "ACTIVE_ONLY", 10, None)[0].count("src_offset <=") == 0


def test_dataset_filters_select_runs_with_some_matching_input():
    sql, params = build_search_query("db", ["1"], "datasets.name = 'iris' AND datasets.context IN ('training')",
                                     [], "ACTIVE_ONLY", 10, None)
    assert sql.count("run_id IN (SELECT run_id FROM db.dataset_inputs WHERE ") == 2
    assert "WHERE name = {p2:String})" in sql and params["p2"] == "iris"
    assert "indexOf(tag_keys, 'mlflow.data.context')], NULL) IN {p3:Array(String)})" in sql
    assert params["p3"] == ["training"]
