"""The SDK's URLs on a real node: versioned (immutable), major (short cache) and plain paths serve
web/sdk/ byte for byte, other releases get a 404 that says what is served, the old /vendor/ path
still works, a foreign site may load the files (CORS), and docs/sdk.md's integrity hashes are the
hashes of the served bytes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import aiohttp

from server.sdk import IMMUTABLE, MAJOR_CACHE, PLAIN_CACHE, SDK_DIR, sdk_version
from server.sri import DOCS, EXAMPLE_URL, docs_up_to_date, integrity, sdk_files

VERSION = sdk_version()


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers or {}) as resp:
            return resp.status, await resp.read(), dict(resp.headers)


async def test_versioned_major_and_plain_paths_serve_the_sdk_with_their_cache(segue) -> None:
    source = (SDK_DIR / "segue.js").read_bytes()
    for prefix, cache in ((f"sdk/{VERSION}/", IMMUTABLE), ("sdk/v1/", MAJOR_CACHE), ("sdk/", PLAIN_CACHE)):
        status, body, headers = await _get(segue.url + prefix + "segue.js")
        assert status == 200, prefix
        assert body == source, prefix
        assert headers["Cache-Control"] == cache, prefix
        assert "javascript" in headers["Content-Type"], headers["Content-Type"]  # module scripts need a JS type
        # the module graph stays on the path it was loaded from (relative imports)
        status, body, _ = await _get(segue.url + prefix + "vendor/socket.io.esm.min.js")
        assert status == 200 and body == (SDK_DIR / "vendor" / "socket.io.esm.min.js").read_bytes(), prefix
    # a revalidation of the immutable file keeps its header
    _, _, headers = await _get(segue.url + f"sdk/{VERSION}/segue.js")
    status, _, again = await _get(segue.url + f"sdk/{VERSION}/segue.js", {"If-None-Match": headers["Etag"]})
    assert status == 304 and again["Cache-Control"] == IMMUTABLE


async def test_other_releases_get_a_404_naming_what_is_served(segue) -> None:
    for path in ("sdk/0.0.1/segue.js", "sdk/v2/segue.js", f"sdk/{VERSION}/no-such-file.js"):
        status, body, headers = await _get(segue.url + path)
        assert status == 404, path
        assert "immutable" not in headers.get("Cache-Control", ""), path  # a 404 is never cached for a year
    status, body, _ = await _get(segue.url + "sdk/0.0.1/segue.js")
    assert f"/sdk/{VERSION}/".encode() in body and b"/sdk/v1/" in body, body
    # paths under /sdk/ that look like neither still reach the plain folder
    status, _, _ = await _get(segue.url + "sdk/vendor/README.md")
    assert status == 200


async def test_old_vendor_path_still_serves_the_socketio_client(segue) -> None:
    status, body, _ = await _get(segue.url + "vendor/socket.io.esm.min.js")
    assert status == 200
    assert body == (SDK_DIR / "vendor" / "socket.io.esm.min.js").read_bytes()


async def test_another_site_may_load_the_versioned_sdk(segue) -> None:
    origin = "https://shop.example"
    for path in (f"sdk/{VERSION}/embed.js", f"sdk/{VERSION}/widget.js", "sdk/v1/segue.js"):
        status, _, headers = await _get(segue.url + path, {"Origin": origin})
        assert status == 200, path
        assert headers.get("Access-Control-Allow-Origin") in ("*", origin), (path, headers)


async def test_a_listed_origins_setting_covers_the_versioned_paths(start_segue) -> None:
    node = await start_segue({"cors.customer_origins": ["https://shop.example"]})
    for path in (f"sdk/{VERSION}/embed.js", "sdk/v1/widget.js"):
        status, _, headers = await _get(node.url + path, {"Origin": "https://shop.example"})
        assert status == 200 and headers.get("Access-Control-Allow-Origin") == "https://shop.example", path
        status, body, _ = await _get(node.url + path, {"Origin": "https://elsewhere.example"})
        assert status == 403 and b"cors.customer_origins" in body, (path, status, body)


def _docs_pins() -> dict[str, str]:
    """Every (SDK URL → integrity) docs/sdk.md publishes: script tags and import-map entries."""
    text = DOCS.read_text(encoding="utf-8")
    pins: dict[str, str] = {}
    for src, value in re.findall(r'<script src="([^"]+)"\s+integrity="([^"]+)"', text):
        pins[src] = value
    for block in re.findall(r'<script type="importmap">\s*(\{.*?\})\s*</script>', text, re.S):
        pins.update(json.loads(block)["integrity"])
    return pins


async def test_docs_publish_the_hashes_of_the_served_files(segue) -> None:
    assert docs_up_to_date(), "docs/sdk.md does not carry the current SDK hashes: run `python -m server.sri --update-docs`"
    pins = _docs_pins()
    assert f"{EXAMPLE_URL}/sdk/{VERSION}/embed.js" in pins and f"{EXAMPLE_URL}/sdk/{VERSION}/widget.js" in pins, pins
    for url, value in pins.items():
        assert url.startswith(EXAMPLE_URL + "/"), url
        status, body, _ = await _get(segue.url + url[len(EXAMPLE_URL) + 1:])
        assert status == 200, url
        served = "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()
        assert served == value, f"{url}: docs say {value}, served {served}: run `python -m server.sri --update-docs`"
    # every module of the SDK is pinned (a new module file must get its hash too)
    modules = {m for m in sdk_files() if m.endswith(".js")} - {"embed.js"}
    assert {"segue.js", "widget.js", "vendor/socket.io.esm.min.js"} <= modules and "call-demo.js" not in modules
    pinned = {u.rsplit(f"/sdk/{VERSION}/", 1)[1] for u in pins}
    assert modules <= pinned, modules - pinned
    assert integrity(b"") == "sha384-OLBgp1GsljhM2TJ+sbHjaiH9txEUvgdDTAzHv2P24donTt6/529l+9Ua0vFImLlb"


def test_sri_command_prints_every_file_and_checks_docs(capsys) -> None:
    from server.sri import main

    assert main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    printed = {line.split()[1]: line.split()[0] for line in lines}
    assert printed[f"/sdk/{VERSION}/embed.js"] == integrity((SDK_DIR / "embed.js").read_bytes())
    assert f"/sdk/{VERSION}/vendor/socket.io.esm.min.js" in printed
    assert main(["--check"]) == 0
    assert main(["--snippets", "https://support.shop.example/"]) == 0
    snippets = capsys.readouterr().out
    assert f'<script src="https://support.shop.example/sdk/{VERSION}/embed.js"' in snippets
    assert "sri:begin" not in snippets and "segue.example.com" not in snippets


def test_sri_check_fails_on_a_stale_docs_block(tmp_path: Path) -> None:
    from server.sri import BEGIN, END, docs_with_block

    stale = f"intro\n{BEGIN}\nold hashes\n{END}\noutro\n"
    docs = tmp_path / "sdk.md"
    docs.write_text(stale)
    assert not docs_up_to_date(docs)
    updated = docs_with_block(stale, "NEW")
    assert updated == "intro\nNEW\noutro\n"
