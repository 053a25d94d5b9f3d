"""The benchmark scripts in benchmarks/ answer --help and document only options they have."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "benchmarks"


def _help(*argv: str) -> str:
    script = SCRIPTS / "novelty_threshold.py"
    result = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_novelty_threshold_help_lists_its_commands_and_options():
    assert "{collect,cross,choose}" in _help("--help")
    for command in ("collect", "cross"):
        text = _help(command, "--help")
        assert "--data-dir" in text
        assert "--extra-dir" in text
    assert "files" in _help("choose", "--help")
    docstring = (SCRIPTS / "novelty_threshold.py").read_text().split('"""')[1]
    documented = set(re.findall(r"--[a-z][a-z-]+", docstring))
    assert documented == {"--data-dir", "--extra-dir"}
