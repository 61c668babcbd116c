"""Running the ``segue`` commands (``python -m server ...``) in a test, as a subprocess.

Why one module: every test that runs a command needs the same environment (the caller's without
its own ``SEGUE_`` settings, a data folder of the test's, quiet logs) and reads what the command
prints in English; the commands translate their lines (docs/cli.md), so the locale is set here,
once, instead of in a copy per test file (a developer's ``LANG=zh_CN.UTF-8`` failed them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment for a command: the caller's without its ``SEGUE_`` settings, ``data_dir``
    as the data folder, warnings only in the logs, English output, then ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUE_")}
    env.update({"SEGUE_DATA_DIR": str(data_dir), "SEGUE_LOG_LEVEL": "warning", "LC_ALL": "C.UTF-8"})
    env.update(settings)
    return env


def run_segue(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """``python -m server <args>`` run to its end (at most 60 s) with :func:`cli_env`."""
    return subprocess.run([sys.executable, "-m", "server", *args], env=cli_env(tmp_path / "data", **settings),
                          capture_output=True, text=True, timeout=60)
