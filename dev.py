#!/usr/bin/env python3
"""The README's two commands, using nothing but Python:

    python3 dev.py run    set up (virtualenv, install, migrate, demo data), then run the
                          web server and a django-q2 worker on SQLite
    python3 dev.py test   set up, then run the whole test suite

Environment variables (DATABASE_URL, REDIS_URL, ...) pass through unchanged.
"""

import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


def sh(*args: str, **kwargs) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, cwd=ROOT, check=True, **kwargs)


def setup() -> None:
    if not PY.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".installed"
    if not stamp.exists() or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        sh(str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        sh(str(PY), "-m", "pip", "install", "--quiet", "-e", ".[dev]")
        stamp.touch()
    # The browser tests (tests/ui) drive Debian's chromium; `playwright install` cannot
    # download here. Install it for `dev.py test` when we can (root, apt-get present).
    import shutil

    if sys.argv[1:2] == ["test"] and shutil.which("chromium") is None:
        can_install = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
        if can_install:
            print("chromium is missing; installing it with apt-get for the browser tests",
                  flush=True)
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for args in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
                print("+", " ".join(args), flush=True)
                if subprocess.run(args, env=env).returncode != 0:  # noqa: S603 - fixed argv
                    print("apt-get failed; the browser tests will be skipped", flush=True)
                    break
        else:
            print("chromium is not installed and cannot be installed here (needs root and "
                  "apt-get); the browser tests will be skipped (CI=true makes them fail)",
                  flush=True)


def run() -> None:
    setup()
    (ROOT / "var").mkdir(exist_ok=True)
    sh(str(PY), "manage.py", "migrate", "--noinput")
    sh(str(PY), "manage.py", "load_demo")
    port = os.environ.get("PORT", "8000")
    procs = [
        subprocess.Popen([str(PY), "manage.py", "qcluster"], cwd=ROOT),
        subprocess.Popen([str(PY), "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                         cwd=ROOT),
    ]
    print(f"\nentityflow is running: http://127.0.0.1:{port}/admin/  (user demo, password demo12345)"
          "\nPress Ctrl-C to stop.\n", flush=True)
    try:
        while all(p.poll() is None for p in procs):
            signal.pause() if hasattr(signal, "pause") else procs[0].wait(1)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def test(extra: list[str]) -> int:
    setup()
    (ROOT / "var").mkdir(exist_ok=True)
    return subprocess.run([str(PY), "-m", "pytest", *extra], cwd=ROOT).returncode


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "run":
        run()
    elif command == "test":
        sys.exit(test(sys.argv[2:]))
    else:
        print(__doc__)
        sys.exit(2)
