"""MLflow 3 ``search_logged_models``: the same filter grammar as ``search_runs`` (``server.search``),
with the logged-model attributes, compiled to parameterized ClickHouse SQL.

Attributes: ``name``, ``model_id``, ``model_type``, ``status``, ``source_run_id`` (strings) and
``creation_timestamp`` / ``last_updated_timestamp`` (numbers; ``creation_time`` /
``last_updated_time`` are aliases), plus ``metrics.<key>``, ``params.<key>``, ``tags.<key>``, as in
MLflow's ``SearchLoggedModelsUtils``. A model's metric value is its latest point (greatest step, then
timestamp). ``datasets`` (name, optional digest) restrict metric comparisons to metrics logged on one
of those datasets; an ``order_by`` item's dataset does the same for that item. Deleted models are
never returned. Order: the given items, then ``creation_timestamp DESC``, then ``model_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trackstream.consumers.store import check_database_name
from trackstream.errors import InvalidInput
from trackstream.server.search import (SQL_COMPARATORS, Comparison, OrderTerm, Vocabulary, Joins, keyed_condition,
                                       SqlParams, check_max_results, decode_page_token, parse_filter, parse_order_by)

MODEL_VOCABULARY = Vocabulary(
    string_attributes=("name", "model_id", "model_type", "status", "source_run_id"),
    numeric_attributes=("creation_timestamp", "last_updated_timestamp"),
    aliases={"creation_time": "creation_timestamp", "last_updated_time": "last_updated_timestamp"},
)
SEARCH_LOGGED_MODELS_DEFAULT_MAX = 100
_COLUMNS = {"creation_timestamp": "creation_timestamp_ms", "last_updated_timestamp": "last_updated_timestamp_ms"}
_MODEL_SOURCES = {
    "metric": "SELECT model_id, toNullable(argMax(value, (step, timestamp_ms))) AS v "
              "FROM {db}.logged_model_metrics WHERE key = {key}{extra} GROUP BY model_id",
    "param": "SELECT model_id, toNullable(any(value)) AS v FROM {db}.logged_model_params WHERE key = {key} "
             "GROUP BY model_id",
    "tag": "SELECT model_id, toNullable(tupleElement(argMax((value, deleted), src_offset), 1)) AS v "
           "FROM {db}.logged_model_tags WHERE key = {key} "
           "GROUP BY model_id HAVING tupleElement(argMax((value, deleted), src_offset), 2) = 0",
}


@dataclass(frozen=True)
class DatasetFilter:
    name: str
    digest: str | None = None


@dataclass(frozen=True)
class ModelOrder:
    term: OrderTerm
    dataset: DatasetFilter | None = None


def _dataset(item: Any, what: str) -> DatasetFilter | None:
    name, digest = item.get("dataset_name"), item.get("dataset_digest")
    if name in (None, ""):
        if digest:
            raise InvalidInput(f"Invalid {what}: dataset_digest needs a dataset_name")
        return None
    if not isinstance(name, str) or (digest is not None and not isinstance(digest, str)):
        raise InvalidInput(f"Invalid {what}: dataset_name and dataset_digest must be strings")
    return DatasetFilter(name, digest or None)


def parse_datasets(items: Any) -> list[DatasetFilter]:
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidInput("Invalid value for parameter 'datasets': expected a list of "
                           "{dataset_name, dataset_digest} objects")
    found = [_dataset(i, "datasets entry") for i in items]
    if any(d is None for d in found):
        raise InvalidInput("Invalid datasets entry: dataset_name is required")
    return [d for d in found if d is not None]


def parse_model_order_by(items: Any) -> list[ModelOrder]:
    """MLflow's ``order_by`` of SearchLoggedModels: ``[{field_name, ascending, dataset_name, dataset_digest}]``."""
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidInput("Invalid value for parameter 'order_by': expected a list of "
                           "{field_name, ascending, dataset_name, dataset_digest} objects")
    orders = []
    for item in items:
        field_name, ascending = item.get("field_name"), item.get("ascending", True)
        if not isinstance(field_name, str) or not field_name:
            raise InvalidInput("Invalid order_by item: field_name is required")
        if not isinstance(ascending, bool):
            raise InvalidInput(f"Invalid order_by item for {field_name!r}: ascending must be true or false")
        term, = parse_order_by([field_name], MODEL_VOCABULARY)
        orders.append(ModelOrder(OrderTerm(term.kind, term.key, ascending), _dataset(item, "order_by item")))
    return orders


def _dataset_condition(datasets: list[DatasetFilter], p: SqlParams) -> str:
    if not datasets:
        return ""
    terms = []
    for d in datasets:
        term = f"dataset_name = {p.bind(d.name, 'String')}"
        if d.digest is not None:
            term += f" AND dataset_digest = {p.bind(d.digest, 'String')}"
        terms.append(f"({term})")
    return f" AND ({' OR '.join(terms)})"


def _attribute_condition(c: Comparison, p: SqlParams) -> str:
    numeric = c.key in MODEL_VOCABULARY.numeric_attributes
    return f"m.{_COLUMNS.get(c.key, c.key)} {SQL_COMPARATORS[c.comparator]} " \
           f"{p.bind(c.value, 'Float64' if numeric else 'String')}"


def build_logged_model_search_query(database: str, experiment_ids: list[str], filter_string: str | None,
                                    datasets: list[DatasetFilter], order_by: list[ModelOrder], max_results: int,
                                    page_token: str | None) -> tuple[str, dict[str, Any]]:
    """SQL + parameters selecting ``max_results + 1`` model ids (column ``model_id``) in search order;
    cut the page with ``server.search.paginate``."""
    db = check_database_name(database)
    check_max_results(max_results)
    offset = decode_page_token(page_token)
    comparisons = parse_filter(filter_string, MODEL_VOCABULARY)
    p = SqlParams()
    joins = Joins(db, p, _MODEL_SOURCES, id_column="model_id", outer="m")
    experiments = p.bind([str(e) for e in experiment_ids], "Array(String)")
    where = ["m.lifecycle_stage = 'active'"]
    for c in comparisons:
        if c.kind == "attribute":
            where.append(_attribute_condition(c, p))
        else:
            extra = _dataset_condition(datasets, p) if c.kind == "metric" else ""
            where.append(keyed_condition(c, joins.column(c.kind, c.key, extra), p))
    columns, order = ["m.model_id AS model_id"], []
    for i, item in enumerate(order_by):
        term = item.term
        if term.kind == "attribute":
            source = f"m.{_COLUMNS.get(term.key, term.key)}"
        else:
            extra = _dataset_condition([item.dataset], p) if term.kind == "metric" and item.dataset else ""
            source = joins.column(term.kind, term.key, extra)
        columns.append(f"{source} AS order_{i}")
        order.append(f"order_{i} {'ASC' if term.ascending else 'DESC'} NULLS LAST")
    ordered = {(o.term.kind, o.term.key) for o in order_by}
    if ("attribute", "creation_timestamp") not in ordered:
        order.append("m.creation_timestamp_ms DESC")
    if ("attribute", "model_id") not in ordered:
        order.append("m.model_id ASC")
    p.values.update(limit=max_results + 1, offset=offset)
    sql = (f"SELECT {', '.join(columns)}\n"
           f"FROM (SELECT * FROM {db}.logged_models WHERE experiment_id IN {experiments}\n"
           "      ORDER BY model_id, src_offset DESC LIMIT 1 BY model_id) AS m\n"
           + "".join(j + "\n" for j in joins.clauses)
           + f"WHERE {' AND '.join(where)}\n"
           f"ORDER BY {', '.join(order)}\n"
           "LIMIT {limit:UInt64} OFFSET {offset:UInt64}")
    return sql, p.values
