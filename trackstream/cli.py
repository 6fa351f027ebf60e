"""The `trackstream` command line. Errors become one readable line and a non-zero exit code."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from trackstream.config import Settings, redact_secrets
from trackstream.errors import InvalidInput, NotFound, TrackstreamError
from trackstream.moments import parse_moment
from trackstream.output import FORMATS, format_ms, render, render_table

# Installed by `trackstream[server]` only; a command that needs one of them says so.
SERVER_ONLY_PACKAGES = frozenset({"chdb", "clickhouse_connect", "faust", "aiokafka", "aiohttp", "pyarrow", "msgspec", "orjson"})

EXIT_ERROR = 1
EXIT_USAGE = 2


def _broker(settings: Settings) -> Any:
    from trackstream.infra.kafka_broker import KafkaBroker

    host, _, port = settings.kafka_bootstrap.rpartition(":")
    return KafkaBroker(settings.home, host=host or "127.0.0.1", port=int(port), controller_port=int(port) + 1)


def cmd_infra(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.infra.topics import ensure_topics

    if args.action == "topics":  # any broker, e.g. an authenticated cluster with an admin's credentials
        created = ensure_topics(settings)
        print(f"created topics: {', '.join(created)}" if created else
              f"topics {settings.topic} and {settings.dead_letter_topic} already exist")
        return 0
    broker = _broker(settings)
    if args.action == "up":
        before = broker.status()
        status = broker.start()
        created = ensure_topics(settings)
        verb = "already running" if before.running else "started"
        print(f"Kafka {verb}: {status.bootstrap} (pid {status.pid})\n  log:  {status.log_path}\n  data: {status.data_dir}")
        if created:
            print(f"  created topics: {', '.join(created)}")
    elif args.action == "down":
        stopped = broker.stop()
        print("Kafka stopped" if stopped else "Kafka was not running (nothing of ours to stop)")
    else:
        status = broker.status()
        if status.running:
            answering = "answering" if status.answering else "NOT answering"
            print(f"Kafka running, {answering}: {status.bootstrap} pid={status.pid}\n  log: {status.log_path}")
            return 0 if status.answering else 3
        from trackstream.infra.kafka_broker import metadata_answers

        if metadata_answers(settings.kafka_bootstrap, client_config=settings.kafka_security.librdkafka_config()):
            print(f"Kafka answering at {settings.kafka_bootstrap} (not started by `trackstream infra up`)")
            return 0
        print(f"Kafka not running at {settings.kafka_bootstrap} (start it with `trackstream infra up`)")
        return 3
    return 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.server_process import ServerProcess

    if args.cluster:
        from trackstream.infra.cluster import LocalCluster

        cluster = LocalCluster(settings.home / "cluster", settings)
        cluster.up()
        print(f"Cluster started under {cluster.home}:\n{cluster.describe()}")
        return 0

    cmd_infra(argparse.Namespace(action="up"), settings)
    server = ServerProcess(settings)
    pid, started = server.start()
    print(f"Server {'started' if started else 'already running'}: {settings.server_url} (pid {pid})\n  log: {server.log_path}")
    return 0


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.server_process import ServerProcess

    if args.cluster:
        from trackstream.infra.cluster import LocalCluster

        stopped = LocalCluster(settings.home / "cluster", settings).down()
        print("Stopped: " + (", ".join(stopped) if stopped else "nothing (nothing of ours was running)"))
        return 0

    print("Server stopped" if ServerProcess(settings).stop() else "Server was not running (nothing of ours to stop)")
    return cmd_infra(argparse.Namespace(action="down"), settings)


def cmd_server(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.server.main import serve

    serve(settings, loglevel=args.loglevel)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.server.main import serve_worker

    serve_worker(settings, loglevel=args.loglevel)
    return 0


def cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.server.main import serve_gateway

    serve_gateway(settings)
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.reading import HttpReader, running_server_url

    code = cmd_infra(argparse.Namespace(action="status"), settings)
    url = running_server_url(settings)
    if not url:
        print("Server not running (start it with `trackstream up`)")
        return 3
    stats = HttpReader(url).status()
    print(f"Server running: {url} (Prometheus metrics at {url}/metrics)")
    print(f"ClickHouse: {redact_secrets(_recorded_clickhouse(settings), settings.clickhouse_dsn)}")
    rows = [[k, json.dumps(v) if isinstance(v, dict) else v] for k, v in stats.items()]
    print(render_table(["metric", "value"], rows))
    return code


def _recorded_clickhouse(settings: Settings) -> str:
    """The connection string the running server recorded in server.json (older servers wrote it
    unmasked), else this environment's."""
    try:
        recorded = json.loads((settings.home / "server.json").read_text())
        return f"{recorded['clickhouse']} (database {recorded['database']})"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{settings.clickhouse_dsn} (database {settings.database})"


def _as_of(args: argparse.Namespace) -> int | None:
    return parse_moment(args.as_of, "--as-of") if getattr(args, "as_of", None) else None


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.reading import open_reader

    runs = open_reader(settings).runs(args.limit, args.experiment, _as_of(args))
    columns = ["run_id", "run_name", "experiment_id", "status", "start_time", "end_time", "lifecycle_stage"]
    rows = [[r["run_id"], r["run_name"], r["experiment_id"], r["status"], format_ms(r["start_time"]),
             format_ms(r["end_time"]), r["lifecycle_stage"]] for r in runs]
    print(render(columns, rows, args.format))
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.reading import open_reader

    run = open_reader(settings).run(args.run_id, _as_of(args))
    if args.as_of:
        print(f"(as of {format_ms(_as_of(args))} UTC)")
    print(f"run {run['run_id']}  {run['run_name']!r}  experiment {run['experiment_id']}  status {run['status']}")
    print(f"  started {format_ms(run['start_time'])}  ended {format_ms(run['end_time'])}  {run['lifecycle_stage']}")
    if run.get("missing_artifacts"):
        print(f"  waiting for artifacts: {', '.join(run['missing_artifacts'])}")
    for title, mapping in (("params", run["params"]), ("tags", run["tags"])):
        if mapping:
            print(f"\n{title}:\n" + render_table(["key", "value"], sorted(mapping.items())))
    if run["metrics"]:
        rows = [[k, m["value"], m["step"], format_ms(m["timestamp"])] for k, m in sorted(run["metrics"].items())]
        print("\nmetrics (latest):\n" + render_table(["key", "value", "step", "timestamp"], rows))
    return 0


def cmd_metrics(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.reading import open_reader

    history = open_reader(settings).metric_history(args.run_id, args.key, None, _as_of(args))
    if len(history["step"]) == 0:
        raise NotFound(f"no points for metric {args.key!r} of run {args.run_id!r}")
    rows = list(zip(history["step"], history["timestamp_ms"], history["value"]))
    if args.format == "table" and len(rows) > args.max_rows:
        head, tail = rows[: args.max_rows // 2], rows[-args.max_rows // 2:]
        print(render_table(["step", "timestamp_ms", "value"], head + tail))
        print(f"... {len(rows)} points in all; showing the first and last {args.max_rows // 2} "
              f"(use --format csv for every point)")
    else:
        print(render(["step", "timestamp_ms", "value"], rows, args.format, args.output))
    return 0


def cmd_rejects(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.reading import open_reader

    rejects = open_reader(settings).rejects(args.limit)
    columns = ["received_at", "reason", "event_type", "aggregate_id", "src_partition", "src_offset", "detail"]
    print(render(columns, [[r[c] for c in columns] for r in rejects], args.format))
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.reading import open_reader

    result = open_reader(settings).sql(args.query)
    text = render(result["columns"], result["rows"], args.format, args.output)
    if text:
        print(text)
    elif args.output:
        print(f"wrote {len(result['rows'])} rows to {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.demo import log_example_run, wait_for_run

    run_id = log_example_run(settings, steps=args.steps)
    print(f"logged example run {run_id} ({args.steps} steps); waiting for it to be materialized ...")
    wait_for_run(settings, run_id, expected_points=args.steps * 2, timeout=args.timeout)
    cmd_run(argparse.Namespace(run_id=run_id, as_of=None), settings)
    print(f"\nfull history:   trackstream metrics {run_id} loss")
    print(f"SQL:            trackstream sql \"SELECT key, count(), min(value), max(value) FROM "
          f"{settings.database}.metrics WHERE run_id = '{run_id}' GROUP BY key\"")
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from trackstream.reading import HttpReader, running_server_url

    until_ms = parse_moment(args.until, "--until") if args.until else None
    bar = tqdm(total=0, unit="ev", desc="replay", dynamic_ncols=True, disable=None)

    def show(progress: dict[str, Any]) -> None:
        bar.total = progress["total_events"]
        bar.n = progress["events"]
        bar.set_postfix(points_s=f"{progress['points_per_s']:,.0f}", lag=progress["lag"], refresh=False)
        bar.refresh()

    url = running_server_url(settings)
    if url:
        server = HttpReader(url)
        state = server.start_replay(args.database, until_ms, args.replace)
        while state["state"] == "running":
            if state["progress"]:
                show(state["progress"])
            time.sleep(0.5)
            state = server.replay_status()
        if state["state"] == "failed":
            bar.close()
            raise TrackstreamError(f"replay failed: {state['error']}")
        report = state["report"]
    else:
        from trackstream.consumers.replay import ReplayJob, default_replay_database, report_as_dict
        from trackstream.consumers.store import connect

        job = ReplayJob(settings, connect(settings.clickhouse_dsn, "replay"),
                        args.database or default_replay_database(settings.database), until_ms, args.replace)
        report = report_as_dict(job.run(on_progress=lambda p: show(p.as_dict())))
    show(report["progress"])
    bar.close()
    p = report["progress"]
    print(f"replayed {p['events']:,} events ({p['metric_points']:,} metric points) into {report['database']} "
          f"in {p['elapsed_s']} s: {p['events_per_s']:,.0f} events/s, {p['points_per_s']:,.0f} points/s")
    if report["until_ms"] is not None:
        print(f"state as of {format_ms(report['until_ms'])} UTC (events after it skipped); not compared with live")
        return 0
    rows = [[t["table"], t["live_rows"], t["replay_rows"], "equal" if t["equal"] else "DIFFERENT"]
            for t in report["tables"]]
    print(render_table(["table", "live rows", "replayed rows", "result"], rows))
    for t in report["tables"]:
        for example in t["examples"]:
            print(f"  {t['table']}: {example}")
    print("replay equals the live state" if report["equal"] else "replay DIFFERS from the live state")
    return 0 if report["equal"] else EXIT_ERROR


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.producer.kafka_writer import default_spool_root
    from trackstream.producer.sync import sync_spools

    root = default_spool_root()
    report = sync_spools(root, settings.kafka_bootstrap, settings.topic, timeout=args.timeout, progress=True,
                         producer_config=settings.kafka_security.librdkafka_config())
    print(f"delivered {report.delivered:,} spooled events from {root} to {settings.topic}")
    if report.locked:
        print(f"skipped {len(report.locked)} spool(s) still owned by running processes")
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)
    if report.remaining:
        print(f"{report.remaining:,} events are still on disk (is Kafka at {settings.kafka_bootstrap} up?); "
              "run `trackstream sync` again", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_ERROR if report.errors else 0


def cmd_auth(args: argparse.Namespace, settings: Settings) -> int:
    """Secrets for the auth file: print only hashes into it, never the secrets themselves."""
    import secrets

    from trackstream.server.auth import hash_secret
    from trackstream.server.passwords import hash_password

    if args.action == "new-token":
        token = secrets.token_urlsafe(32)
        print(f"token (give it to the client, e.g. MLFLOW_TRACKING_TOKEN): {token}")
        print(f"tokens_sha256 entry for the auth file:                  {hash_secret(token)}")
        return 0
    print(hash_password(_read_new_password()))
    return 0


def _read_new_password() -> str:
    """A new password, typed twice at a terminal or read from the first line of stdin."""
    import getpass

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            raise InvalidInput("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise InvalidInput("use a password of at least 8 characters")
    return password


def cmd_kafka_user(args: argparse.Namespace, settings: Settings) -> int:
    """A SCRAM user with one role's ACLs, made with the administrator's TRACKSTREAM_KAFKA_* credentials."""
    from trackstream.infra.kafka_auth import add_scram_user, grant_role

    password = _read_new_password()
    add_scram_user(settings.kafka_config(), args.name, password)
    grant_role(settings.kafka_config(), args.role, args.name, topic=settings.topic,
               dead_letter_topic=settings.dead_letter_topic, group=settings.consumer_group)
    print(f"Kafka user {args.name} can now sign in (SCRAM-SHA-512) with the {args.role} role's ACLs on "
          f"{settings.topic}; give it TRACKSTREAM_KAFKA_USERNAME={args.name} and the password")
    return 0


def cmd_gc_staging(args: argparse.Namespace, settings: Settings) -> int:
    from trackstream.producer.staging_gc import collect_staging, describe_duration, parse_duration, staging_stores

    grace_s = parse_duration(args.older_than) if args.older_than is not None else settings.staging_grace_s
    result = collect_staging(staging_stores(settings), grace_s)
    for entry in result.removed:
        multipart = f" (incomplete multipart upload {entry.upload_id})" if entry.upload_id else ""
        print(f"removed {entry.name}{multipart}: {entry.size:,} bytes, last written {format_ms(int(entry.modified * 1000))} UTC")
    print(f"removed {len(result.removed)} abandoned upload(s), freed {result.bytes_freed:,} bytes; "
          f"kept {len(result.kept)} younger than {describe_duration(grace_s)}")
    for error in result.errors:
        print(f"error: could not remove {error}", file=sys.stderr)
    return EXIT_ERROR if result.errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trackstream", description="Event-sourced ML experiment tracking.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = add("infra", cmd_infra, "start, stop or inspect the local Kafka broker; `topics` creates the event "
                                "topics on whatever broker TRACKSTREAM_KAFKA names")
    p.add_argument("action", choices=["up", "down", "status", "topics"])
    p = add("up", cmd_up, "start Kafka and the trackstream server in the background")
    p.add_argument("--cluster", action="store_true", help="instead: 3 Kafka brokers, a ClickHouse server, "
                                                          "2 workers and 2 gateways under $TRACKSTREAM_HOME/cluster")
    p = add("down", cmd_down, "stop the server and Kafka that `up` started")
    p.add_argument("--cluster", action="store_true", help="stop what `up --cluster` started")
    p = add("server", cmd_server, "run the worker and HTTP API in the foreground")
    p.add_argument("--loglevel", default="warning")
    p = add("worker", cmd_worker, "run one consumer-group member in the foreground (N of them share the "
                                  "partitions; needs a ClickHouse server)")
    p.add_argument("--loglevel", default="warning")
    add("gateway", cmd_gateway, "run the HTTP API alone in the foreground (stateless; M of them; needs a "
                                "ClickHouse server)")
    add("status", cmd_status, "broker and ingest status")
    p = add("runs", cmd_runs, "list runs, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--experiment", help="only runs of this experiment id")
    p.add_argument("--as-of", help="the state at this time: Unix ms or ISO 8601 (UTC by default)")
    p.add_argument("--format", choices=FORMATS[:3], default="table")
    p = add("run", cmd_run, "show one run: params, tags, latest metrics")
    p.add_argument("run_id")
    p.add_argument("--as-of", help="the state at this time: Unix ms or ISO 8601 (UTC by default)")
    p = add("metrics", cmd_metrics, "a metric's full history")
    p.add_argument("run_id")
    p.add_argument("key")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--output", type=Path)
    p.add_argument("--max-rows", type=int, default=40)
    p.add_argument("--as-of", help="the history as it was at this time")
    p = add("rejects", cmd_rejects, "events the worker refused, with the reason")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--format", choices=FORMATS[:3], default="table")
    p = add("sql", cmd_sql, "read-only SQL on the materialized tables")
    p.add_argument("query")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--output", type=Path, help="file for --format parquet")
    p = add("replay", cmd_replay, "rebuild all tables from the log into another database and compare")
    p.add_argument("--database", help="target database (default: <live>_replay_<time>)")
    p.add_argument("--until", help="only events up to this time: Unix ms or ISO 8601 (UTC by default)")
    p.add_argument("--replace", action="store_true", help="drop and rebuild the target if it exists")
    p = add("sync", cmd_sync, "deliver events that SDK processes left in their disk spools while offline")
    p.add_argument("--timeout", type=float, default=120.0)
    p = add("auth", cmd_auth, "make auth-file entries: a password hash (read from the terminal or stdin) "
                              "or a new random token and its hash")
    p.add_argument("action", choices=["hash-password", "new-token"])
    p = add("kafka-user", cmd_kafka_user, "on an authenticated broker, as its administrator: create a SCRAM user "
                                          "(password from the terminal or stdin) with one role's ACLs")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=["trainer", "worker", "gateway"])
    p = add("gc-staging", cmd_gc_staging, "remove uploads that killed processes left in the artifact stores' "
                                           "staging areas (committed artifacts are never touched)")
    p.add_argument("--older-than", help="grace period, e.g. 30m, 24h, 2d (default: TRACKSTREAM_STAGING_GRACE_S, 24h)")
    p = add("demo", cmd_demo, "log an example training run and show it")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--timeout", type=float, default=60.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.handler(args, settings)
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (TrackstreamError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in SERVER_ONLY_PACKAGES:
            print(f"error: '{args.command}' needs the server side, which this install lacks ({exc.name} is "
                  "missing): pip install 'trackstream[server]'", file=sys.stderr)
            return EXIT_ERROR
        raise
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
