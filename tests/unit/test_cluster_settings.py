"""Settings of several nodes and Redis faults: bad values stop the server with a message naming
the key; the public address is announced in an answer's host candidates."""

from __future__ import annotations

import pytest

from media import announce
from server.config import ConfigError, load_config
from server.redis_client import _parse, sentinel_url


@pytest.mark.parametrize("overrides, key", [
    ({"redis.appendfsync": "no"}, "redis.appendfsync"),
    ({"redis.sentinels": ["10.0.0.5"]}, "redis.sentinels"),
    ({"cluster.heartbeat_s": 2.0, "cluster.node_ttl_s": 3.0}, "cluster.node_ttl_s"),
    ({"cluster.node_id": "a b"}, "cluster.node_id"),
    ({"cluster.forward_timeout_s": 0}, "forward_timeout_s"),
])
def test_bad_cluster_settings_name_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(environ={}, overrides=overrides)
    assert key in str(err.value)


def test_environment_sets_the_cluster() -> None:
    config = load_config(environ={"SEGUE_CLUSTER_NODE_ID": "node-7", "SEGUE_REDIS_SENTINELS": '["h1:26379", "h2:26380"]',
                                  "SEGUE_REDIS_APPENDFSYNC": "always"})
    assert config.cluster.node_id == "node-7" and config.redis.appendfsync == "always"
    url = sentinel_url(config.redis.sentinels, config.redis.sentinel_master)
    assert url == "redis+sentinel://h1:26379,h2:26380/0/mymaster"
    assert _parse(url) == ([("h1", 26379), ("h2", 26380)], "mymaster", 0)


def test_public_address_replaces_host_candidates_only() -> None:
    sdp = ("v=0\r\nc=IN IP4 10.0.0.4\r\n"
           "a=candidate:1 1 udp 2130706431 10.0.0.4 40001 typ host\r\n"
           "a=candidate:2 1 udp 1694498815 198.51.100.9 40001 typ srflx raddr 10.0.0.4 rport 40001\r\n")
    out = announce(sdp, "203.0.113.11")
    assert "a=candidate:1 1 udp 2130706431 203.0.113.11 40001 typ host" in out
    assert "198.51.100.9 40001 typ srflx" in out  # a server-reflexive candidate is left alone
    assert "c=IN IP4 203.0.113.11" in out
    assert announce(sdp, "") == sdp
