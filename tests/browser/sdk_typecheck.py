"""TypeScript for the SDK's tests: install the pinned compiler into tests/ts/node_modules (git-ignored)
when it is missing, run `tsc --noEmit`, and read what the declarations promise (tests/ts/declared.mjs).

Used by tests/unit/test_sdk_types.py (the type check) and tests/browser/test_sdk_embed.py (the
declarations against the real modules). Needs Node and npm (and the npm registry the first time).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

TS_DIR = Path(__file__).resolve().parents[1] / "ts"
TSC = TS_DIR / "node_modules" / "typescript" / "bin" / "tsc"
SDK_LINK = TS_DIR / "node_modules" / "@segue" / "sdk"


def _run(args: list[str], what: str, timeout: float = 600) -> str:
    try:
        done = subprocess.run(args, cwd=TS_DIR, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        pytest.fail(f"{args[0]} not found: install Node.js 18+ with npm to type-check the SDK ({what})")
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({' '.join(args)}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def ensure_typescript() -> None:
    """`npm install` in tests/ts when the pinned TypeScript or the SDK link is missing."""
    pinned = json.loads((TS_DIR / "package.json").read_text())["devDependencies"]["typescript"]
    installed = TS_DIR / "node_modules" / "typescript" / "package.json"
    current = json.loads(installed.read_text())["version"] if installed.exists() else None
    if current == pinned and TSC.exists() and SDK_LINK.exists():
        return
    npm = shutil.which("npm") or "npm"
    _run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], "installing TypeScript into tests/ts")


def run_tsc(config: str = "tsconfig.json") -> subprocess.CompletedProcess[str]:
    ensure_typescript()
    node = shutil.which("node") or "node"
    return subprocess.run([node, str(TSC), "--noEmit", "--pretty", "false", "-p", config],
                          cwd=TS_DIR, capture_output=True, text=True, timeout=600)


def declared_api() -> dict[str, Any]:
    """Per SDK module: declared value exports, class members and returned interfaces' members."""
    ensure_typescript()
    node = shutil.which("node") or "node"
    return json.loads(_run([node, "declared.mjs"], "reading the SDK's declarations"))


def packed_files() -> set[str]:
    """What `npm pack` would publish from web/sdk (a dry run: nothing is written or sent)."""
    npm = shutil.which("npm") or "npm"
    sdk = TS_DIR.parents[1] / "web" / "sdk"
    try:
        done = subprocess.run([npm, "pack", "--dry-run", "--json", "--loglevel=error"], cwd=sdk,
                              capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        pytest.fail("npm not found: install Node.js 18+ with npm to check the SDK package")
    if done.returncode != 0:
        pytest.fail(f"npm pack --dry-run failed in web/sdk:\n{done.stdout}\n{done.stderr}")
    return {entry["path"] for entry in json.loads(done.stdout)[0]["files"]}
