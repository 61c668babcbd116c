"""The SDK's TypeScript declarations type-check with the pinned compiler, and they are strict
enough: the example's `@ts-expect-error` lines (misuses) must still be errors."""

from __future__ import annotations

import re

from sdk_typecheck import TS_DIR, run_tsc

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
