"""The chdb ClickHouse server's decisions: config, loopback only, which process is ours."""

from pathlib import Path
from xml.etree import ElementTree

import pytest

from trackstream.infra.clickhouse_server import (
    ClickHouseServer,
    is_server_cmdline,
    require_loopback,
    serve_command,
    serve_query,
    server_config_xml,
)
from trackstream.infra.kafka_broker import InfraError


def test_config_xml_names_loopback_host_and_both_ports():
    root = ElementTree.fromstring(server_config_xml("127.0.0.1", 18123, 19000))
    assert root.tag == "clickhouse"
    assert root.findtext("listen_host") == "127.0.0.1"
    assert root.findtext("http_port") == "18123"
    assert root.findtext("tcp_port") == "19000"


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "example.com", "::"])
def test_non_loopback_hosts_are_refused_because_default_user_has_no_password(host):
    with pytest.raises(InfraError, match="loopback"):
        require_loopback(host)
    with pytest.raises(InfraError, match="loopback"):
        ClickHouseServer("/tmp/x", host=host)


def test_ipv6_loopback_is_accepted():
    assert require_loopback("::1") == "::1"


def test_same_port_for_http_and_tcp_is_refused():
    with pytest.raises(InfraError, match="must differ"):
        ClickHouseServer("/tmp/x", http_port=18123, tcp_port=18123)


def test_serve_query_starts_both_listeners_before_the_query_that_keeps_them_alive():
    statements = [part.strip() for part in serve_query().split(";")]
    assert statements[:2] == ["SYSTEM START LISTEN HTTP", "SYSTEM START LISTEN TCP"]
    assert "system.numbers" in statements[2] and "sleepEachRow" in statements[2]


def test_only_the_serve_command_on_this_data_dir_counts_as_ours(tmp_path):
    data = tmp_path / "data"
    assert is_server_cmdline(serve_command("/usr/bin/python3", data), data)
    assert not is_server_cmdline(serve_command("/usr/bin/python3", tmp_path / "other"), data)
    assert not is_server_cmdline(["/usr/bin/python3", "-m", "http.server", "--data-dir", str(data)], data)
    assert not is_server_cmdline(["python", "-m", "trackstream.infra.clickhouse_server", "serve", "--data-dir"], data)


def test_dsn_is_the_http_interface_with_the_passwordless_default_user():
    assert ClickHouseServer(Path("/tmp/x"), http_port=18124, tcp_port=19001).dsn == "http://default:@127.0.0.1:18124"
