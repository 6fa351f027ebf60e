"""MLflow ``search_experiments``: the filter grammar of ``search_runs`` (``server.search``, the same
tokenizer and parser) with the experiment vocabulary, compiled to parameterized ClickHouse SQL.

As in MLflow's ``SearchExperimentsUtils``: attributes ``name`` and ``experiment_id`` (strings;
``experiment_id`` also takes IN / NOT IN lists) and ``creation_time`` / ``last_update_time``
(numbers), plus ``tags.<key>``; comparisons are AND-ed. ``order_by`` takes the four attributes
only (ordering by tags is refused, as MLflow does). Order: the given items, then
``creation_time DESC`` unless ordered, then ``experiment_id ASC`` (numerically) unless ordered.
Paging is by offset with MLflow's token (``server.search.encode_page_token``).
"""

from __future__ import annotations

from typing import Any

from trackstream.consumers.store import check_database_name
from trackstream.errors import InvalidInput
from trackstream.server.search import (SQL_COMPARATORS, Comparison, OrderTerm, SqlParams, Vocabulary,
                                       check_max_results, decode_page_token, keyed_condition, parse_filter,
                                       parse_order_by)

EXPERIMENT_VOCABULARY = Vocabulary(
    string_attributes=("name", "experiment_id"),
    numeric_attributes=("creation_time", "last_update_time"),
    aliases={},
    list_attributes=("experiment_id",),
    keyed_kinds=("tag",),
)
EXPERIMENT_VIEW_TYPES = {"ACTIVE_ONLY": ("active",), "DELETED_ONLY": ("deleted",), "ALL": ("active", "deleted")}
EXPERIMENT_COLUMNS = ("experiment_id", "name", "artifact_location", "lifecycle_stage", "last_update_time",
                      "creation_time", "tags")
# Experiment ids are integer strings; MLflow's SQL store orders them as integers.
_SORT_COLUMNS = {"experiment_id": "toUInt64OrZero(e.experiment_id)"}


def parse_experiment_order_by(items: Any) -> list[OrderTerm]:
    """``["name", "creation_time DESC", ...]``: attributes only."""
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise InvalidInput(f"Invalid value {items!r} for parameter 'order_by': expected a list of strings such as "
                           "[\"name ASC\", \"creation_time DESC\"]")
    terms = parse_order_by(items, EXPERIMENT_VOCABULARY)
    for item, term in zip(items, terms):
        if term.kind != "attribute":
            raise InvalidInput(f"Invalid order_by clause '{item}': experiments can only be ordered by "
                               f"{sorted(EXPERIMENT_VOCABULARY.string_attributes + EXPERIMENT_VOCABULARY.numeric_attributes)}")
    return terms


def _condition(c: Comparison, p: SqlParams) -> str:
    if c.kind == "tag":
        key = p.bind(c.key, "String")
        return keyed_condition(c, f"if(mapContains(e.tags, {key}), e.tags[{key}], NULL)", p)
    if c.comparator in ("IN", "NOT IN"):
        return f"e.{c.key} {c.comparator} {p.bind(list(c.value or ()), 'Array(String)')}"
    numeric = c.key in EXPERIMENT_VOCABULARY.numeric_attributes
    return f"e.{c.key} {SQL_COMPARATORS[c.comparator]} {p.bind(c.value, 'Float64' if numeric else 'String')}"


def build_experiment_search_query(database: str, view_type: str, filter_string: str | None, order_by: Any,
                                  max_results: int, page_token: str | None) -> tuple[str, dict[str, Any]]:
    """SQL + parameters selecting ``max_results + 1`` experiments (the ``EXPERIMENT_COLUMNS``) in search
    order; cut the page with ``server.search.paginate``."""
    db = check_database_name(database)
    check_max_results(max_results)
    offset = decode_page_token(page_token)
    if view_type not in EXPERIMENT_VIEW_TYPES:
        raise InvalidInput(f"Invalid value {view_type!r} for parameter 'view_type': expected one of "
                           f"{list(EXPERIMENT_VIEW_TYPES)}")
    comparisons = parse_filter(filter_string, EXPERIMENT_VOCABULARY)
    terms = parse_experiment_order_by(order_by)
    p = SqlParams()
    where = [f"e.lifecycle_stage IN {p.bind(list(EXPERIMENT_VIEW_TYPES[view_type]), 'Array(String)')}"]
    where += [_condition(c, p) for c in comparisons]
    columns, order = [f"e.{c} AS {c}" for c in EXPERIMENT_COLUMNS], []
    for i, term in enumerate(terms):
        columns.append(f"{_SORT_COLUMNS.get(term.key, 'e.' + term.key)} AS order_{i}")
        order.append(f"order_{i} {'ASC' if term.ascending else 'DESC'} NULLS LAST")
    ordered = {t.key for t in terms}
    if "creation_time" not in ordered:
        order.append("e.creation_time DESC")
    if "experiment_id" not in ordered:
        order.append(f"{_SORT_COLUMNS['experiment_id']} ASC")
    p.values.update(limit=max_results + 1, offset=offset)
    sql = (f"SELECT {', '.join(columns)}\n"
           f"FROM {db}.experiments_latest AS e\n"
           f"WHERE {' AND '.join(where)}\n"
           f"ORDER BY {', '.join(order)}\n"
           "LIMIT {limit:UInt64} OFFSET {offset:UInt64}")
    return sql, p.values
