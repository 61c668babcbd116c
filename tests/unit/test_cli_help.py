"""`segue --help` lists every command with one line saying what it is for (issue 12: a newcomer
found the agent commands only in docs/rest.md)."""

from __future__ import annotations

import re

import pytest

from server import cli


def test_help_lists_every_command_with_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    names = ["serve", *cli.EXTRA_COMMANDS]
    assert {"agent", "apikey"} <= set(names)  # and every command another layer registers (webhook...)
    for name in names:
        line = re.search(rf"^\s+{name}\s+(\S.*)$", out, re.MULTILINE)
        assert line, f"{name} is not listed with a description in:\n{out}"
    assert "manage agent accounts" in out and "manage API keys" in out
