"""`trackstream worker` / `gateway` share ClickHouse with other processes: the embedded engine is refused."""

import pytest

from trackstream.config import Settings
from trackstream.errors import InvalidInput
from trackstream.server.main import require_shared_clickhouse


@pytest.mark.parametrize("role", ["worker", "gateway"])
def test_embedded_engine_is_refused_with_the_way_out(role, tmp_path):
    with pytest.raises(InvalidInput, match=f"trackstream {role}.*TRACKSTREAM_CLICKHOUSE.*trackstream server"):
        require_shared_clickhouse(Settings(clickhouse_dsn=f"chdb://{tmp_path}/clickhouse"), role)


def test_a_clickhouse_server_is_accepted():
    require_shared_clickhouse(Settings(clickhouse_dsn="http://default:@127.0.0.1:8123"), "worker")


def test_cli_has_worker_and_gateway_and_cluster_flags():
    from trackstream.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["worker"]).handler.__name__ == "cmd_worker"
    assert parser.parse_args(["gateway"]).handler.__name__ == "cmd_gateway"
    assert parser.parse_args(["up", "--cluster"]).cluster is True
    assert parser.parse_args(["down"]).cluster is False
