"""Coverage-guided fuzzing (atheris) of the SDP, RTP, RTCP and STUN parsing paths, bounded in time.

Each target of ``atheris_targets.py`` runs in a subprocess for ``SEGUE_FUZZ_SECONDS`` (default 12)
seconds, starting from the corpus kept in ``tests/fuzz/corpus/<target>/`` (new inputs go to a
temporary folder, so a run does not change the repository). A crash fails the test and leaves the
input in ``tests/fuzz/crashes/`` to add to the corpus once fixed. To grow the corpus:
``python tests/fuzz/atheris_targets.py sdp -max_total_time=300 /tmp/new tests/fuzz/corpus/sdp``,
then ``-merge=1 tests/fuzz/corpus/sdp /tmp/new`` (docs/testing.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hostile_kit import report

HERE = Path(__file__).resolve().parent
SECONDS = int(os.environ.get("SEGUE_FUZZ_SECONDS", "12"))


@pytest.mark.parametrize("target", ["sdp", "rtp", "rtcp", "stun"])
def test_atheris_target_runs_clean(target: str, tmp_path: Path) -> None:
    crashes = HERE / "crashes"
    crashes.mkdir(exist_ok=True)
    corpus = HERE / "corpus" / target
    # libFuzzer reads its RSS as getrusage's peak, which a child inherits from the process that forked
    # it: inside a long pytest run (over 1 GB by the end of the suite) a 1 GB limit fired before the
    # first input. 4 GB still stops a real leak on this 24 GB machine.
    run = subprocess.run(
        [sys.executable, str(HERE / "atheris_targets.py"), target, f"-max_total_time={SECONDS}", "-timeout=10",
         "-rss_limit_mb=4096", f"-artifact_prefix={crashes}/{target}-", str(tmp_path), str(corpus)],
        capture_output=True, text=True, timeout=SECONDS + 120,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    done = re.search(r"Done (\d+) runs in (\d+) second", out)
    assert done, out[-2000:]
    cov = re.search(r"DONE\s+cov: (\d+)", out)
    report(f"atheris_{target}", int(done.group(1)), seconds=int(done.group(2)), seed_inputs=len(list(corpus.iterdir())),
           coverage_edges=int(cov.group(1)) if cov else None, crashes=0, internal=0)
