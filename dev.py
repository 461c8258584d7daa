#!/usr/bin/env python3
"""The README's two commands, using nothing but Python:

    python3 dev.py run [--verbose]  set up (virtualenv, install, migrate, demo data), then
                                    run the web server and a django-q2 worker on SQLite
    python3 dev.py test [ARGS]      set up, then run the test suite (ARGS go to pytest)
    python3 dev.py lock [--upgrade] write the lock files again from pyproject.toml

Installs come from the lock files in config/requirements/ (exact versions with their
hashes): `run.lock` has what running needs, `dev.lock` adds the test and docs tools.
They are installed again when a lock file or pyproject.toml changes; `dev.py lock`
writes them (docs/contributing.md, "Dependencies and lock files").

`run --verbose` shows django-q2's line per task. Environment variables (DATABASE_URL,
REDIS_URL, PORT, ...) pass through unchanged; ENTITYFLOW_VENV picks another virtualenv
than .venv.
"""

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("ENTITYFLOW_VENV") or ROOT / ".venv")
PY = VENV / "bin" / "python"
STAMP = VENV / ".installed"
LOCKS = ROOT / "config" / "requirements"
RUN_LOCK, DEV_LOCK = LOCKS / "run.lock", LOCKS / "dev.lock"
PIP_TOOLS = "pip-tools==7.6.2"  # writes the lock files; never installed into .venv
LOGIN = "user demo, password demo12345"


class Failed(Exception):
    """Something dev.py started failed: say what, then exit with `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class Stop(Exception):
    """SIGINT or SIGTERM arrived: stop the children and leave."""


def sh(*args: str, env: dict | None = None) -> None:
    print("+", " ".join(args), flush=True)
    done = subprocess.run(args, cwd=ROOT, env=env)  # noqa: S603 - our own argv
    if done.returncode != 0:
        raise Failed(f"`{' '.join(args)}` failed with exit code {done.returncode} (see above).",
                     done.returncode)


# --- installing from the lock files ------------------------------------------------------

def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(extra: str | None) -> set[str]:
    """The distributions pyproject.toml asks for (with the extra's, when given)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    if extra:
        wanted += project["optional-dependencies"][extra]
    return {normalized(re.match(r"[A-Za-z0-9._-]+", spec).group()) for spec in wanted}


def pinned(lock: Path) -> set[str]:
    return {normalized(m.group(1)) for m in
            re.finditer(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==", lock.read_text(), re.M)}


def lock_check(lock: Path, extra: str | None) -> None:
    """Refuse a lock file that misses a dependency pyproject.toml names (it was written
    before the dependency was added)."""
    missing = sorted(declared(extra) - pinned(lock)) if lock.exists() else ["(no lock file)"]
    if missing:
        raise Failed(f"{os.path.relpath(lock, ROOT)} does not match pyproject.toml (missing: "
                     f"{', '.join(missing)}). Write the lock files again: python3 dev.py lock")


def stamp_fresh(accepted: list[Path]) -> bool:
    """Whether the virtualenv holds one of `accepted` as it is now, and this pyproject."""
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return False
    if not PY.exists() or stamp.get("pyproject") != digest(ROOT / "pyproject.toml"):
        return False
    return any(stamp.get("lock") == lock.name and stamp.get("digest") == digest(lock)
               for lock in accepted if lock.exists())


def setup(lock: Path, extra: str | None, also_fresh: list[Path] = ()) -> None:
    """Install `lock` and the project (without its dependencies: the lock has them all)
    into the virtualenv, unless it already holds it or one of `also_fresh` (a superset)."""
    lock_check(lock, extra)
    if stamp_fresh([lock, *also_fresh]):
        return
    if not PY.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    STAMP.unlink(missing_ok=True)
    pip = [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    sh(*pip, "--require-hashes", "-r", str(lock.relative_to(ROOT)))
    sh(*pip, "--no-deps", "--no-build-isolation", "-e", ".")
    STAMP.write_text(json.dumps({"lock": lock.name, "digest": digest(lock),
                                 "pyproject": digest(ROOT / "pyproject.toml")}))


def lock(upgrade: bool) -> None:
    """Write config/requirements/*.lock from pyproject.toml with pip-tools, kept in its
    own virtualenv under var/. dev.lock is resolved first; run.lock takes the same
    versions, so a virtualenv that holds dev.lock also holds run.lock."""
    tools = ROOT / "var" / "lock-tools"
    if not (tools / "bin" / "python").exists():
        venv.EnvBuilder(with_pip=True).create(tools)
        sh(str(tools / "bin" / "python"), "-m", "pip", "install", "--quiet", PIP_TOOLS)
    env = {**os.environ, "CUSTOM_COMPILE_COMMAND": "python3 dev.py lock"}
    compile_ = [str(tools / "bin" / "python"), "-m", "piptools", "compile", "--quiet",
                "--generate-hashes", "--allow-unsafe", "--strip-extras",
                "--build-deps-for=editable", "--no-emit-index-url",
                "--no-emit-find-links"]
    if upgrade:
        compile_.append("--upgrade")
    sh(*compile_, "--extra=dev", f"--output-file={DEV_LOCK.relative_to(ROOT)}",
       "pyproject.toml", env=env)
    pins = tools / "dev-pins.txt"  # dev.lock's versions without its hashes, as constraints
    found = re.findall(r"^[A-Za-z0-9._-]+==[^\s;\\]+", DEV_LOCK.read_text(), re.M)
    pins.write_text("".join(f"{pin}\n" for pin in found))
    sh(*compile_, f"--constraint={pins.relative_to(ROOT)}",
       f"--output-file={RUN_LOCK.relative_to(ROOT)}",
       "pyproject.toml", env=env)


# --- dev.py test ---------------------------------------------------------------------------

def chromium_ensure() -> None:
    """The browser tests (tests/ui) drive Debian's chromium; `playwright install` cannot
    download here. Install it when we can (root, apt-get present)."""
    if shutil.which("chromium") is not None:
        return
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        print("chromium is not installed and cannot be installed here (needs root and "
              "apt-get); the browser tests will be skipped (CI=true makes them fail)", flush=True)
        return
    print("chromium is missing; installing it with apt-get for the browser tests", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        print("+", " ".join(args), flush=True)
        if subprocess.run(args, env=env).returncode != 0:  # noqa: S603 - fixed argv
            print("apt-get failed; the browser tests will be skipped", flush=True)
            return


def test(extra: list[str]) -> int:
    setup(DEV_LOCK, "dev")
    chromium_ensure()
    (ROOT / "var").mkdir(exist_ok=True)
    return subprocess.run([str(PY), "-m", "pytest", *extra], cwd=ROOT).returncode  # noqa: S603


# --- dev.py run ----------------------------------------------------------------------------

def port_check(port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as runserver binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            why = "is already in use" if exc.errno == errno.EADDRINUSE else \
                f"cannot be used ({exc.strerror})"
            raise Failed(f"port {port} {why}: stop what uses it, or pick another port, "
                         f"e.g. PORT={port + 1} python3 dev.py run") from None


def start(argv: list[str], env: dict) -> subprocess.Popen:
    """A child in its own session: the terminal's Ctrl-C reaches dev.py only, which then
    stops every child in order, and whatever a child leaves behind with it."""
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,  # noqa: S603
                            start_new_session=True)


def children_check(children: dict[str, subprocess.Popen]) -> None:
    for name, child in children.items():
        code = child.poll()
        if code is not None:
            raise Failed(f"the {name} exited with code {code} (its output is above), so "
                         "dev.py stopped everything it had started.", max(code, 1))


def web_wait(children: dict[str, subprocess.Popen], port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children_check(children)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise Failed(f"the web server did not answer on port {port} within {timeout:.0f} s.")


def children_stop(children: dict[str, subprocess.Popen], grace: float = 20) -> None:
    """SIGTERM to each child (qcluster stops its own workers in order), then SIGKILL to
    whatever is left in their process groups after `grace` seconds."""
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + grace
    for child in children.values():
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for child in children.values():
        if hasattr(os, "killpg"):
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        child.wait()
    for child in children.values():
        group_gone(child.pid)


def group_gone(pgid: int, timeout: float = 10) -> None:
    """Wait until no process of the group is left running. SIGKILL is delivered
    asynchronously: a busy machine can take a moment before a killed grandchild (a
    qcluster worker whose parent is already gone) has really stopped."""
    if not hasattr(os, "killpg"):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members = [p for p in Path("/proc").glob("[0-9]*") if _running_in_group(p, pgid)]
        if not members:
            return
        time.sleep(0.05)


def _running_in_group(proc: Path, pgid: int) -> bool:
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z" and fields[2] == str(pgid)


def run_env(verbose: bool) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if verbose:
        env["Q_LOG_LEVEL"] = "INFO"
    else:  # django-q2 logs every task at INFO: thousands of lines a minute
        env.setdefault("Q_LOG_LEVEL", "WARNING")
    return env


def serve(port: int, env: dict, children: dict[str, subprocess.Popen]) -> None:
    sh(str(PY), "manage.py", "migrate", "--noinput", env=env)
    sh(str(PY), "manage.py", "load_demo", env=env)
    children["worker"] = start([str(PY), "manage.py", "qcluster"], env)
    children["web server"] = start([str(PY), "manage.py", "runserver", f"127.0.0.1:{port}",
                                    "--noreload"], env)
    web_wait(children, port)
    detail = "" if env["Q_LOG_LEVEL"].upper() in ("INFO", "DEBUG") else \
        "; per-task log lines are off (python3 dev.py run --verbose shows them)"
    print(f"\nworker: qcluster running (pid {children['worker'].pid}){detail}", flush=True)
    print(f"entityflow is running: http://127.0.0.1:{port}/admin/  ({LOGIN})"
          "\nPress Ctrl-C to stop.\n", flush=True)
    while True:
        children_check(children)
        time.sleep(0.5)


def run(verbose: bool) -> int:
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    port = int(os.environ.get("PORT", "8000"))
    port_check(port)  # before anything else: the commonest reason not to start
    setup(RUN_LOCK, None, also_fresh=[DEV_LOCK])
    (ROOT / "var").mkdir(exist_ok=True)
    children: dict[str, subprocess.Popen] = {}
    try:
        serve(port, run_env(verbose), children)
    except Stop as stop:
        print(f"\n{stop}: stopping the web server and the worker…", flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second one must not cut this short
            signal.signal(signum, signal.SIG_IGN)
        children_stop(children)
    print("Stopped.", flush=True)
    return 0


def _stop(signum: int, frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "run" and set(rest) <= {"--verbose"}:
            return run("--verbose" in rest)
        if command == "test":
            return test(rest)
        if command == "lock" and set(rest) <= {"--upgrade"}:
            lock("--upgrade" in rest)
            return 0
    except Failed as failure:
        print(f"dev.py: {failure}", file=sys.stderr, flush=True)
        return failure.code
    except Stop as stop:  # while installing or migrating, before anything was started
        print(f"dev.py: stopped ({stop}).", file=sys.stderr, flush=True)
        return 128 + signal.Signals[str(stop)].value
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
