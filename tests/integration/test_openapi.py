"""The OpenAPI document: it names every /api/ route the node serves, and a live node's answers
conform to it (schemathesis: generated requests with an API key holding every scope; no 5xx, every
status documented, every body matching its schema)."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance,
)

from segue_cli import cli_env
from segue_clients import http
from server import Config

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ALL_SCOPES = ["conversations:read", "conversations:write", "customers:read", "webhooks:manage", "agents:manage"]


async def test_spec_names_every_api_route(segue: Any) -> None:
    status, spec = await http("GET", f"{segue.url}api/openapi.json")
    assert status == 200 and spec["openapi"] == "3.1.0"
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    routed = set()
    for resource in segue.app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or ""
        if not path.startswith("/api/"):
            continue
        for route in resource:
            if route.method not in ("HEAD", "OPTIONS", "*"):  # HEAD: aiohttp's twin of GET; OPTIONS: CORS preflight
                routed.add((route.method, path))
    assert routed == documented, {"routed, not documented": routed - documented,
                                  "documented, not routed": documented - routed}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            if op["security"]:  # every authenticated operation says which scope, or who, may call it
                assert "x-segue-scope" in op or "Auth:" in op["description"], (method, path)
    write = spec["paths"]["/api/v1/conversations/{cid}/messages"]["post"]
    assert write["security"] == [{"bearer": ["conversations:write"]}]
    body = spec["components"]["schemas"]["MessagePost"]
    assert body["required"] == ["text"] and body["properties"]["text"]["maxLength"] == segue.config.limits.max_message_chars
    assert "as" in body["properties"] and body["additionalProperties"] is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _segue_env(redis_url: str, data: Path, prefix: str, port: int) -> dict[str, str]:
    env = cli_env(data, SEGUE_REDIS_URL=redis_url, SEGUE_REDIS_KEY_PREFIX=prefix, SEGUE_HTTP_HOST="127.0.0.1",
                  SEGUE_HTTP_PORT=str(port))
    if any(f.name == "webhooks" for f in dataclasses.fields(Config)):
        # generated webhook URLs must never be called: no delivery worker on this node
        env["SEGUE_WEBHOOKS_ENABLED"] = "false"
    return env


@pytest.fixture(scope="module")
def live_node(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A node in its own process (schemathesis calls it synchronously) and an API key with every scope."""
    port = _free_port()
    env = _segue_env(redis_url, tmp_path_factory.mktemp("openapi"), f"test-{uuid.uuid4().hex[:10]}:", port)
    made = subprocess.run([sys.executable, "-m", "server", "apikey", "create", "--name", "schemathesis",
                           *[a for s in ALL_SCOPES for a in ("--scope", s)]],
                          env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    proc = subprocess.Popen([sys.executable, "-m", "server", "serve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/openapi.json", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read() if proc.poll() is not None and proc.stdout else ""
                pytest.fail(f"the node did not start: {out}")
            time.sleep(0.1)
        yield base, key
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_answers_conform_to_the_spec(live_node: tuple[str, str]) -> None:
    """Every documented operation, a few generated requests each (schemathesis's Python API, driven
    by Hypothesis here: its pytest plugin does not run under this pytest)."""
    base, key = live_node
    request = urllib.request.Request(f"{base}/api/v1/conversations?state=all", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as resp:  # the key works: answers are not all 401s
        assert resp.status == 200
    schema = schemathesis.openapi.from_url(f"{base}/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            case.call_and_validate(base_url=base, headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
