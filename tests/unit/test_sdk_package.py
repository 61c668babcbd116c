"""The SDK's npm package (web/sdk/package.json): one version for the SDK and the server, and an
`exports` map whose every entry (module and declarations) exists and is published."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from server.sdk import SDK_DIR, SdkPackageError, sdk_version
from server.version import __version__

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = json.loads((SDK_DIR / "package.json").read_text())


def test_the_sdk_version_is_the_server_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert PACKAGE["version"] == pyproject, "web/sdk/package.json and pyproject.toml must carry the same version"
    assert sdk_version() == pyproject
    assert __version__ == pyproject, "reinstall Segue (pip install -e .) after a version change"


def test_exports_point_at_published_files() -> None:
    assert PACKAGE["type"] == "module" and PACKAGE["license"] == "MIT"
    assert PACKAGE["name"] == "@segue/sdk"
    files = PACKAGE["files"]
    for entry, target in PACKAGE["exports"].items():
        paths = target.values() if isinstance(target, dict) else [target]
        for path in paths:
            assert (SDK_DIR / path).is_file(), f"exports[{entry!r}] names {path}, which does not exist"
            name = path.removeprefix("./")
            published = name in files or any(
                (f.startswith("*") and name.endswith(f[1:]) and "/" not in name) or name.startswith(f) for f in files)
            assert published or name == "package.json", f"{name} is exported but not in files"
        if isinstance(target, dict) and target.get("default", "").endswith(".js"):
            assert "types" in target, f"exports[{entry!r}] has no declarations"
    assert (SDK_DIR / PACKAGE["types"]).is_file() and (SDK_DIR / PACKAGE["main"]).is_file()


def test_a_broken_package_json_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SdkPackageError, match="package.json"):
        sdk_version(tmp_path)
    (tmp_path / "package.json").write_text('{"version": "latest"}')
    with pytest.raises(SdkPackageError, match="must look like 1.2.3"):
        sdk_version(tmp_path)
