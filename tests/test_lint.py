"""The code follows the project's lint rules (pyproject.toml, [tool.ruff]): run in the test
suite, so the README's test command and CI check them too."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    # the virtualenv's ruff (a dev dependency), not whichever version is on PATH
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
