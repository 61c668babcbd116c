"""A node without ``cluster.node_id`` keeps the id it drew in its data folder (signaling/cluster.py
``claim_node_id``): the same id after a restart, distinct ids for nodes with distinct folders or
running at once on one folder, and a clear error for a file holding something else
(tests/integration/test_cluster_recordings.py restarts a real node and downloads its recording)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.app import create_app
from server.config import ConfigError, load_config
from signaling import NodeIdError, claim_node_id
from signaling.cluster import valid_node_id

ROOT = Path(__file__).resolve().parents[2]


def test_the_id_drawn_at_the_first_start_comes_back_after_a_restart(tmp_path: Path) -> None:
    first = claim_node_id(tmp_path / "data")
    assert valid_node_id(first.node_id) and first.path == tmp_path / "data" / "node-id"
    assert first.path.read_text() == first.node_id + "\n"
    first.release()
    again = claim_node_id(tmp_path / "data")
    try:
        assert again.node_id == first.node_id
    finally:
        again.release()
    other = claim_node_id(tmp_path / "other-data")  # another node of this machine, its own folder
    try:
        assert other.node_id != first.node_id
    finally:
        other.release()


def test_nodes_running_on_one_folder_get_ids_of_their_own_and_keep_them(tmp_path: Path) -> None:
    a = claim_node_id(tmp_path)
    b = claim_node_id(tmp_path)  # a runs: b takes the next file
    assert b.path == tmp_path / "node-id.2" and b.node_id != a.node_id
    # a node in another process holds node-id.3 while it runs
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; from pathlib import Path; from signaling import claim_node_id; "
        f"c = claim_node_id(Path({str(tmp_path)!r})); print(c.node_id, c.path.name, flush=True); sys.stdin.read()")],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        c_id, c_file = holder.stdout.readline().split()
        assert c_file == "node-id.3" and c_id not in (a.node_id, b.node_id)
        a.release()
        d = claim_node_id(tmp_path)  # a started again: its file and id, while b and c run
        assert (d.path, d.node_id) == (a.path, a.node_id)
        e = claim_node_id(tmp_path)  # one more: not c's file (its process still holds it)
        assert e.path == tmp_path / "node-id.4" and e.node_id not in (a.node_id, b.node_id, c_id)
        for claim in (b, d, e):
            claim.release()
    finally:
        holder.communicate("")  # the process ends: its lock goes with it
    f = claim_node_id(tmp_path)
    g = claim_node_id(tmp_path)
    h = claim_node_id(tmp_path)
    assert [f.node_id, g.node_id, h.node_id] == [a.node_id, b.node_id, c_id]
    for claim in (f, g, h):
        claim.release()


@pytest.mark.parametrize("content", ["not an id!\n", "<script>\n", "a/b"])
def test_a_file_holding_something_else_is_a_clear_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "node-id").write_text(content)
    with pytest.raises(NodeIdError) as err:
        claim_node_id(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "node-id") in message and "delete the file" in message
    assert (tmp_path / "node-id").read_text() == content  # left as it was for the operator
    with pytest.raises(NodeIdError):  # the failed attempt let go of the file: the error again, not node-id.2
        claim_node_id(tmp_path)
    assert not (tmp_path / "node-id.2").exists()
    # the server names it as a settings error (the CLI exits with code 2)
    with pytest.raises(ConfigError) as err:
        create_app(load_config(environ={}, overrides={"data_dir": str(tmp_path)}), "redis://127.0.0.1:1/0")
    assert "node-id" in str(err.value) and "cluster.node_id" in str(err.value)


def test_an_empty_file_gets_a_new_id_and_a_set_node_id_needs_no_file(tmp_path: Path) -> None:
    (tmp_path / "node-id").write_text("")
    claim = claim_node_id(tmp_path)
    assert valid_node_id(claim.node_id) and (tmp_path / "node-id").read_text().strip() == claim.node_id
    claim.release()
    folder = tmp_path / "configured"
    create_app(load_config(environ={}, overrides={"data_dir": str(folder), "cluster.node_id": "edge-1",
                                                  "auth.secret": "s" * 32}), "redis://127.0.0.1:1/0")
    assert not (folder / "node-id").exists()


def test_a_folder_that_cannot_be_written_gives_an_id_for_one_run(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a data folder below a file cannot be created
    claim = claim_node_id(blocker / "data")
    assert valid_node_id(claim.node_id) and claim.path is None
    claim.release()
