"""search_runs SQL from server.search against the real ClickHouse engine."""

from __future__ import annotations

import math

import pytest

from trackstream.server.search import build_search_query, paginate

RUN_COLUMNS = ["run_id", "experiment_id", "run_name", "user_id", "source_name", "parent_run_id", "status",
               "start_time", "end_time", "lifecycle_stage", "artifact_uri", "missing_artifacts",
               "src_partition", "src_offset"]


class Seeder:
    """Inserts rows straight into the materialized tables, each with a fresh src_offset."""

    def __init__(self, client, database: str) -> None:
        self.client, self.db, self.offset = client, database, 0

    def next_offset(self) -> int:
        self.offset += 1
        return self.offset

    def run(self, run_id, experiment_id="1", name="", start=0, end=None, status="FINISHED", stage="active",
            user="u1"):
        self.client.insert(f"{self.db}.runs", [[
            run_id, experiment_id, name or run_id, user, "src", "", status, start, end, stage,
            f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts", [], 0, self.next_offset()]],
            column_names=RUN_COLUMNS)

    def param(self, run_id, key, value):
        self.client.insert(f"{self.db}.params", [[run_id, key, value, 0, f"e{self.offset}", 0, self.next_offset()]],
                           column_names=["run_id", "key", "value", "timestamp_ms", "event_id", "src_partition",
                                         "src_offset"])

    def tag(self, run_id, key, value, deleted=0):
        self.client.insert(f"{self.db}.tags", [[run_id, key, value, deleted, 0, self.next_offset()]],
                           column_names=["run_id", "key", "value", "deleted", "src_partition", "src_offset"])

    def metric(self, run_id, key, *points):
        """points: (step, timestamp, value) in logging order, one insert each like separate batches."""
        for step, ts, value in points:
            self.client.insert(f"{self.db}.metrics", [[run_id, key, step, ts, value, 0, self.next_offset()]],
                               column_names=["run_id", "key", "step", "timestamp_ms", "value", "src_partition",
                                             "src_offset"])


@pytest.fixture
def seeded(db):
    """Experiment 1: r1..r3 active (r2 renamed and back to RUNNING), r4 deleted; experiment 2: r5."""
    client, database = db
    for table in ("latest_metrics_by_key", "runs_current"):  # keep one part per insert: FINAL must pick
        client.command(f"SYSTEM STOP MERGES {database}.{table}")
    s = Seeder(client, database)
    s.run("r1", name="alpha", start=1000, end=2000, status="FINISHED")
    s.run("r2", name="beta-old", start=2000, end=None, status="FINISHED", user="u2")
    s.run("r2", name="beta", start=2000, end=None, status="RUNNING", user="u2")
    s.run("r3", name="Alpha-2", start=3000, end=4000, status="FAILED")
    s.run("r4", name="gamma", start=4000, end=5000)
    s.run("r4", name="gamma", start=4000, end=5000, stage="deleted")
    s.run("r5", experiment_id="2", name="other", start=5000)
    # acc: r1's earlier value passes > 0.9 but its latest fails; r2 the other way round.
    s.metric("r1", "acc", (0, 10, 0.95), (1, 20, 0.5))
    s.metric("r2", "acc", (1, 20, 0.97), (0, 30, 0.1))
    s.metric("r3", "acc", (2, 10, 0.93), (2, 5, 0.2))
    s.metric("r4", "acc", (0, 10, 0.99))
    s.metric("r1", "loss", (0, 10, 0.2))
    s.metric("r2", "loss", (0, 10, 0.1))
    s.param("r1", "lr", "0.1")
    s.param("r2", "lr", "0.01")
    s.param("r1", "opt", "Adam")
    s.param("r2", "opt", "adam")
    s.param("r3", "opt", "SGD")
    s.tag("r1", "my key", "x1")
    s.tag("r1", "mlflow.runName", "alpha")
    s.tag("r2", "my key", "y")
    s.tag("r3", "my key", "z")
    s.tag("r3", "my key", "", deleted=1)
    s.tag("r2", "flip", "a")
    s.tag("r2", "flip", "", deleted=1)
    s.tag("r2", "flip", "b")
    return client, database


def search(client, database, filter_string="", order_by=None, view="ACTIVE_ONLY", experiment_ids=("1",),
           max_results=100, page_token=None):
    sql, params = build_search_query(database, list(experiment_ids), filter_string, order_by or [], view,
                                     max_results, page_token)
    return client.query(sql, parameters=params).result_rows


def ids(client, database, filter_string="", **kwargs):
    return [row[0] for row in search(client, database, filter_string, **kwargs)]


def test_default_order_is_start_time_desc(seeded):
    assert ids(*seeded) == ["r3", "r2", "r1"]


@pytest.mark.parametrize("filter_string, expected", [
    ("metrics.acc > 0.9", ["r3", "r2"]),
    ("metrics.acc < 0.6", ["r1"]),
    ("metrics.acc = 0.5", ["r1"]),
    ("metrics.acc != 0.5", ["r3", "r2"]),
    ("metrics.loss >= 0.1 AND metrics.acc > 0.9", ["r2"]),
])
def test_metric_filters_compare_the_latest_value(seeded, filter_string, expected):
    client, database = seeded
    parts = client.command(f"SELECT count() FROM system.parts WHERE database = '{database}' "
                           "AND table = 'latest_metrics_by_key' AND active")
    assert parts > 1  # the latest value must be found across unmerged parts
    assert ids(*seeded, filter_string) == expected


@pytest.mark.parametrize("filter_string, expected", [
    ("params.lr = '0.1'", ["r1"]),
    ("params.lr != '0.1'", ["r2"]),
    ("params.opt LIKE 'A%'", ["r1"]),
    ("params.opt ILIKE 'a%'", ["r2", "r1"]),
    ("params.opt like '%a%'", ["r2", "r1"]),
    ("params.lr IS NULL", ["r3"]),
    ("params.lr IS NOT NULL", ["r2", "r1"]),
    ("params.missing IS NULL", ["r3", "r2", "r1"]),
])
def test_param_filters(seeded, filter_string, expected):
    assert ids(*seeded, filter_string) == expected


@pytest.mark.parametrize("filter_string, expected", [
    ("tags.`my key` = 'x1'", ["r1"]),
    ('tags."my key" != \'x1\'', ["r2"]),
    ('tags."my key" IS NULL', ["r3"]),
    ("tags.\"mlflow.runName\" LIKE 'al%'", ["r1"]),
    ("tag.`my key` ILIKE 'X%'", ["r1"]),
    ("tags.flip = 'b'", ["r2"]),
    ("tags.flip = 'a'", []),
    ("tags.flip IS NULL", ["r3", "r1"]),
])
def test_tag_filters_see_only_current_tags(seeded, filter_string, expected):
    assert ids(*seeded, filter_string) == expected


@pytest.mark.parametrize("filter_string, expected", [
    ("attributes.status = 'FINISHED'", ["r1"]),
    ("status != 'FINISHED'", ["r3", "r2"]),
    ("run_name = 'beta-old'", []),
    ("run_name LIKE 'alpha%'", ["r1"]),
    ("attributes.`Run Name` ILIKE 'alpha%'", ["r3", "r1"]),
    ("attr.user_id = 'u2'", ["r2"]),
    ("attributes.start_time >= 2000", ["r3", "r2"]),
    ("created < 2000.5", ["r2", "r1"]),
    ("attributes.end_time > 1000", ["r3", "r1"]),
    ("run.artifact_uri LIKE '%/r2/%'", ["r2"]),
    ("attributes.run_id IN ('r1', 'r3', 'r5')", ["r3", "r1"]),
    ("run_id NOT IN ('r1')", ["r3", "r2"]),
    ("run_id = 'r2' and metrics.acc > 0.9 and params.opt = 'adam' and tags.`my key` = 'y'", ["r2"]),
])
def test_attribute_filters(seeded, filter_string, expected):
    assert ids(*seeded, filter_string) == expected


def test_order_by_metric_puts_runs_without_it_last(seeded):
    assert ids(*seeded, order_by=["metrics.loss DESC"]) == ["r1", "r2", "r3"]
    assert ids(*seeded, order_by=["metrics.loss"]) == ["r2", "r1", "r3"]
    rows = search(*seeded, order_by=["metrics.acc DESC"])
    assert [(row[0], row[-1]) for row in rows] == [("r2", 0.97), ("r3", 0.93), ("r1", 0.5)]


def test_order_by_params_tags_and_attributes(seeded):
    assert ids(*seeded, order_by=["params.lr ASC"]) == ["r2", "r1", "r3"]
    assert ids(*seeded, order_by=["params.lr DESC"]) == ["r1", "r2", "r3"]
    assert ids(*seeded, order_by=["tags.`my key` DESC"]) == ["r2", "r1", "r3"]
    assert ids(*seeded, order_by=["attributes.start_time"]) == ["r1", "r2", "r3"]
    assert ids(*seeded, order_by=["end_time DESC"]) == ["r3", "r1", "r2"]
    assert ids(*seeded, order_by=["status", "run_name DESC"]) == ["r3", "r1", "r2"]


def test_nan_sorts_after_numbers_and_before_missing(db):
    client, database = db
    s = Seeder(client, database)
    for i, value in enumerate([1.0, math.nan, None, 3.0]):
        s.run(f"n{i}", start=i)
        if value is not None:
            s.metric(f"n{i}", "m", (0, 0, value))
    assert ids(client, database, order_by=["metrics.m DESC"]) == ["n3", "n0", "n1", "n2"]
    assert ids(client, database, order_by=["metrics.m ASC"]) == ["n0", "n3", "n1", "n2"]
    assert ids(client, database, "metrics.m > 0") == ["n3", "n0"]


def test_run_view_types_and_experiments(seeded):
    assert ids(*seeded, view="DELETED_ONLY") == ["r4"]
    assert ids(*seeded, view="ALL") == ["r4", "r3", "r2", "r1"]
    assert ids(*seeded, "metrics.acc > 0.9", view="ALL") == ["r4", "r3", "r2"]
    assert ids(*seeded, experiment_ids=["2"]) == ["r5"]
    assert ids(*seeded, experiment_ids=["1", "2"]) == ["r5", "r3", "r2", "r1"]
    assert ids(*seeded, experiment_ids=[]) == []


def test_paging_across_three_pages(db):
    client, database = db
    s = Seeder(client, database)
    for i in range(7):
        s.run(f"p{i}", start=100 * (i // 2))  # pairs share a start time: run_id breaks the tie
    expected = ["p6", "p4", "p5", "p2", "p3", "p0", "p1"]
    pages, token = [], None
    while True:
        rows = search(client, database, max_results=3, page_token=token)
        page, token = paginate(rows, 3, token)
        pages.append([r[0] for r in page])
        if token is None:
            break
    assert pages == [expected[:3], expected[3:6], expected[6:]]


def test_injection_attempt_matches_nothing_and_leaves_tables_intact(seeded):
    client, database = seeded
    evil = f"x'; DROP TABLE {database}.runs; --"
    quoted = evil.replace("'", "''")
    for filter_string in (f"params.`{evil}` = 'a'", f"params.lr = '{quoted}'", f"tags.\"{evil}\" LIKE '{quoted}'",
                          f"run_id IN ('{quoted}')", f"metrics.`{evil}` > 0"):
        assert ids(client, database, filter_string) == []
    assert ids(client, database, order_by=[f"params.`{evil}` DESC"]) == ["r3", "r2", "r1"]
    assert client.command(f"SELECT count() FROM {database}.runs") == 7
    assert client.command(f"EXISTS TABLE {database}.params") == 1


def _seed_searchable(s: Seeder) -> None:
    s.run("b1", start=1000)
    s.run("b1", start=1000, status="RUNNING")
    s.run("b2", start=2000)
    s.metric("b1", "acc", (0, 10, 0.9), (1, 20, 0.3))
    s.metric("b2", "acc", (0, 10, 0.8))
    s.param("b1", "opt", "adam")
    s.tag("b2", "team", "x")
    s.tag("b2", "team", "", deleted=1)
    s.tag("b1", "team", "y")


SEARCHES = (("metrics.acc > 0.5", ["b2"]), ("params.opt = 'adam'", ["b1"]), ("tags.team IS NULL", ["b2"]),
            ("attributes.status = 'RUNNING'", ["b1"]), ("", ["b2", "b1"]))


def test_a_database_written_before_the_search_layout_is_backfilled_by_its_migration(clickhouse_dsn, unique_name):
    """Rows stored before migration 012 are found through the tables it adds, and running the
    migration again (a crash before it was recorded) changes no answer."""
    from trackstream.consumers.store import SchemaManager, connect

    client = connect(clickhouse_dsn)
    schema = SchemaManager(client, unique_name)
    layout = next(m for m in schema.migrations if m.name == "012_search_layout")
    schema.migrations = [m for m in schema.migrations if m.version < layout.version]
    try:
        schema.migrate()
        _seed_searchable(Seeder(client, unique_name))
        assert client.command(f"EXISTS TABLE {unique_name}.runs_current") == 0
        SchemaManager(client, unique_name).migrate()
        for filter_string, expected in SEARCHES:
            assert ids(client, unique_name, filter_string) == expected, filter_string
        SchemaManager(client, unique_name).apply(layout)
        for filter_string, expected in SEARCHES:
            assert ids(client, unique_name, filter_string) == expected, filter_string
    finally:
        client.command(f"DROP DATABASE IF EXISTS {unique_name}")


def test_rows_written_after_the_migration_reach_the_search_layout(db):
    client, database = db
    _seed_searchable(Seeder(client, database))
    for filter_string, expected in SEARCHES:
        assert ids(client, database, filter_string) == expected, filter_string


def test_a_key_filter_reads_the_rows_of_that_key_not_of_every_key(db):
    """With many keys per run, a search reads about one key's share of each per-key table, not
    the whole table (the *_by_key tables are ordered by key)."""
    client, database = db
    runs, keys = 2000, 20
    run_ids = [f"k{i:05d}" for i in range(runs)]
    client.insert(f"{database}.runs", [[r, "1", r, "u", "src", "", "FINISHED", i, None, "active", "", [], 0, i]
                                       for i, r in enumerate(run_ids)], column_names=RUN_COLUMNS)
    offsets = iter(range(runs, 10**9))
    client.insert(f"{database}.metrics", [[r, f"m{k:02d}", 0, 0, float(i % 10), 0, next(offsets)]
                                          for i, r in enumerate(run_ids) for k in range(keys)],
                  column_names=["run_id", "key", "step", "timestamp_ms", "value", "src_partition", "src_offset"])
    client.insert(f"{database}.params", [[r, f"p{k:02d}", str(i % 3), 0, "e", 0, next(offsets)]
                                         for i, r in enumerate(run_ids) for k in range(keys)],
                  column_names=["run_id", "key", "value", "timestamp_ms", "event_id", "src_partition", "src_offset"])
    client.insert(f"{database}.tags", [[r, f"t{k:02d}", "v", 0, 0, next(offsets)]
                                       for r in run_ids for k in range(keys)],
                  column_names=["run_id", "key", "value", "deleted", "src_partition", "src_offset"])
    filter_string = "metrics.m07 > 4 and params.p03 = '1' and tags.t11 = 'v'"
    sql, params = build_search_query(database, ["1"], filter_string, ["metrics.m07 DESC"], "ACTIVE_ONLY", 100, None)
    estimate = {row[1]: row[3] for row in client.query("EXPLAIN ESTIMATE " + sql, parameters=params).result_rows}
    for table in ("latest_metrics_by_key", "params_by_key", "tags_by_key"):
        # At most two granules of 8,192 rows, of the table's runs * keys = 40,000.
        assert table in estimate and estimate[table] <= 2 * 8192, (table, estimate)
    expected = [r for i, r in enumerate(run_ids) if i % 10 > 4 and i % 3 == 1]
    found = ids(client, database, filter_string, order_by=["metrics.m07 DESC"], max_results=1000)
    assert sorted(found) == sorted(expected) and len(found) == len(expected)
