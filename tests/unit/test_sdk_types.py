"""The SDK's TypeScript declarations type-check with the pinned compiler, and they are strict
enough: the example's `@ts-expect-error` lines (misuses) must still be errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sdk_typecheck import TS_DIR, packed_files, run_tsc

EXAMPLE = TS_DIR.parents[1] / "web" / "sdk" / "examples" / "headless.ts"


def test_examples_type_check_against_the_declarations() -> None:
    done = run_tsc()
    assert done.returncode == 0, f"tsc --noEmit -p tests/ts/tsconfig.json:\n{done.stdout}{done.stderr}"


def test_the_declarations_refuse_misuse(tmp_path) -> None:
    """Without its `@ts-expect-error` markers the example must fail on exactly those lines: a
    declaration loosened to `any` (or a wrong event name accepted) shows up here."""
    source = EXAMPLE.read_text()
    marked = [i + 2 for i, line in enumerate(source.splitlines()) if line.strip().startswith("// @ts-expect-error")]
    assert len(marked) >= 10, "the example should keep its misuse lines"
    bare = tmp_path / "examples"
    bare.mkdir()
    (bare / "headless.ts").write_text(re.sub(r"// @ts-expect-error[^\n]*", "// (misuse)", source))
    for dts in (TS_DIR.parents[1] / "web" / "sdk").glob("*.d.ts"):
        (tmp_path / dts.name).write_text(dts.read_text())
    config = tmp_path / "tsconfig.json"
    config.write_text((TS_DIR / "tsconfig.json").read_text()
                      .replace('"../../web/sdk/examples/headless.ts"', f'"{bare / "headless.ts"}"')
                      .replace('"package_entries.ts"', ""))
    done = run_tsc(str(config))
    failing = {int(m) for m in re.findall(r"headless\.ts\((\d+),\d+\): error", done.stdout)}
    assert done.returncode != 0
    assert failing == set(marked), f"lines refused: {sorted(failing)}, misuse lines: {marked}\n{done.stdout}"


def test_the_npm_package_carries_every_module_its_entries_load() -> None:
    """Follow the static and dynamic imports from each `exports` entry: every module reached (and
    the widget's stylesheet) is in the package; the examples and demo pages are not."""
    sdk = TS_DIR.parents[1] / "web" / "sdk"
    package = json.loads((sdk / "package.json").read_text())
    packed = packed_files()
    todo = [target["default"].removeprefix("./") for target in package["exports"].values()
            if isinstance(target, dict) and target["default"].endswith(".js")]
    reached: set[str] = set()
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        source = (sdk / name).read_text()
        for spec in re.findall(r"""(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}/[^"']+)["']""", source):
            todo.append((Path(name).parent / spec).as_posix().removeprefix("./"))
    reached = {str(Path(p)) for p in reached}
    assert "vendor/socket.io.esm.min.js" in reached and "call.js" in reached
    assert reached <= packed, f"loaded but not published: {sorted(reached - packed)} (see files in web/sdk/package.json)"
    assert {"widget.css", "segue.d.ts", "widget.d.ts", "README.md", "package.json"} <= packed
    assert not {p for p in packed if p.startswith("examples/") or p.startswith("call-demo")}, packed


def test_every_event_the_modules_emit_is_declared() -> None:
    """`.emit("name"` in segue.js / call.js: each name is a key of a declared event map, so a
    listener for it type-checks (and a misspelt one does not)."""
    from sdk_typecheck import declared_api

    declared = declared_api()
    sdk = TS_DIR.parents[1] / "web" / "sdk"
    for module in ("segue.js", "call.js"):
        emitted = set(re.findall(r"""\.emit\(\s*["']([\w.]+)["']""", (sdk / module).read_text()))
        missing = emitted - set(declared[module]["events"])
        assert not missing, f"{module} emits {sorted(missing)}: declare them in {module.replace('.js', '.d.ts')}"
