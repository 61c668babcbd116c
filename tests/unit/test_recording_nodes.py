"""Recordings with several nodes, the parts without a network: the address a node advertises
(``cluster.internal_url`` and its default) and the node tokens the internal endpoint accepts
(tests/integration/test_cluster_recordings.py drives the whole path with real nodes)."""

from __future__ import annotations

import socket
import time

import pytest

from server.config import ConfigError, load_config
from signaling import ProtocolError, Recordings, Signer
from signaling.cluster import internal_url

RID = "rec_" + "A" * 32


def config(**overrides: object) -> object:
    return load_config(environ={}, overrides=overrides)


def test_the_default_internal_url_is_the_listening_address() -> None:
    assert internal_url(config(**{"http.port": 8081})) == "http://127.0.0.1:8081"
    assert internal_url(config(**{"http.port": 8081}), 9000) == "http://127.0.0.1:9000"  # http.port 0: the real one
    # every interface: others cannot use 0.0.0.0, the host name is the best guess
    assert internal_url(config(**{"http.host": "0.0.0.0", "http.port": 80})) == f"http://{socket.gethostname()}:80"
    assert internal_url(config(**{"http.host": "fd00::5", "http.port": 80})) == "http://[fd00::5]:80"
    # set: as written (without a trailing slash), whatever the port
    set_ = config(**{"cluster.internal_url": "http://10.0.0.7:18081/"})
    assert internal_url(set_) == "http://10.0.0.7:18081" and internal_url(set_, 9000) == "http://10.0.0.7:18081"


@pytest.mark.parametrize("bad", ["10.0.0.7:8081", "ftp://h:1", "http://h:1/segue", "http://", "http://h 1"])
def test_a_bad_internal_url_is_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(ConfigError, match="cluster.internal_url"):
        config(**{"cluster.internal_url": bad})


def test_node_tokens_open_one_recording_for_a_minute() -> None:
    secret = b"the cluster's secret"
    mine = Recordings(None, config(), Signer(secret), node_id="node-2")  # type: ignore[arg-type]
    theirs = Recordings(None, config(), Signer(secret), node_id="node-1")  # type: ignore[arg-type]
    assert theirs.check_node_token(mine.node_token(RID), RID) == "node-2"

    def refused(token: str | None, rid: str = RID) -> str:
        with pytest.raises(ProtocolError) as caught:
            theirs.check_node_token(token, rid)
        assert caught.value.code == "forbidden" and caught.value.http_status == 403
        return caught.value.message

    assert "X-Segue-Node-Token" in refused(None) and "X-Segue-Node-Token" in refused("")
    assert "another recording" in refused(mine.node_token(RID), "rec_" + "B" * 32)
    assert "is auth.secret the same on every node" in refused(Recordings(None, config(), Signer(b"other"), node_id="x")  # type: ignore[arg-type]
                                                 .node_token(RID))
    assert "not a node-to-node token" in refused(Signer(secret).sign("a", f"node-2|{RID}", 60))
    assert "clocks" in refused(Signer(secret).sign("n", f"node-2|{RID}", 60, now=time.time() - 61))  # expired
    assert "malformed" in refused("no.token.here")
