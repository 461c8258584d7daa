"""Safe defaults (docs/operating.md, "Production settings"): an app server started without
DJANGO_SETTINGS_MODULE runs the production settings, which refuse to start without their
secrets, pass `check --deploy`, serve static files through whitenoise and load the API
docs' assets from this site."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.test import Client

from tests.worker import ROOT, wait_for

KEY = "prod-test-" + "k3y-" * 12
HTTPS = {"X-Forwarded-Proto": "https"}  # gunicorn trusts it from 127.0.0.1, as from a proxy
ASSET = re.compile(r'(?:src|href)="([^"]+)"')


def production_env(tmp_path: Path, **extra: str | None) -> dict:
    """A deployment's environment: only what production needs, nothing the test session
    set (no DJANGO_SETTINGS_MODULE, DEBUG, DJANGO_ALLOW_ASYNC_UNSAFE, ...); a None in
    `extra` removes that variable."""
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    env.update(SECRET_KEY=KEY, ALLOWED_HOSTS="127.0.0.1,localhost", PYTHONPATH=str(ROOT),
               DATABASE_URL=f"sqlite:///{tmp_path / 'production.sqlite3'}",
               STATIC_ROOT=str(tmp_path / "static"))
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True,
                          env={**env, "DJANGO_SETTINGS_MODULE": "config.settings.production"},
                          text=True, timeout=300)


SHOW = "import config.wsgi; from django.conf import settings; " \
       "print(settings.SETTINGS_MODULE, settings.DEBUG)"


def test_the_wsgi_application_defaults_to_production_with_debug_off(tmp_path):
    done = python(SHOW, production_env(tmp_path, DEBUG="1"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["config.settings.production", "False"]


def test_the_gunicorn_config_defaults_to_production(tmp_path):
    code = "import runpy, os; runpy.run_path('config/gunicorn.py'); " \
           "print(os.environ['DJANGO_SETTINGS_MODULE'])"
    assert python(code, production_env(tmp_path)).stdout.strip() == "config.settings.production"


def test_a_gunicorn_worker_freezes_what_it_loaded(tmp_path):
    """config/gunicorn.py's post_worker_init: what lives once Django is loaded is out of
    the collector's full collections (gc.freeze), in the worker's process."""
    code = ("import gc, runpy; hooks = runpy.run_path('config/gunicorn.py'); "
            "import django; django.setup(); before = gc.get_freeze_count(); "
            "hooks['post_worker_init'](None); print(before, gc.get_freeze_count())")
    done = python(code, production_env(tmp_path))
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.split())
    assert before == 0 and after > 10_000


@pytest.mark.parametrize("name", ["SECRET_KEY", "ALLOWED_HOSTS"])
def test_production_refuses_to_start_without_its_secrets(tmp_path, name):
    done = python(SHOW, production_env(tmp_path, **{name: None}))
    assert done.returncode != 0
    assert f"ImproperlyConfigured: {name} is not set." in done.stderr
    assert "DJANGO_SETTINGS_MODULE=config.settings.local" in done.stderr


def test_check_deploy_is_clean(tmp_path):
    done = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_the_api_docs_page_loads_its_assets_from_this_site(db):
    page = Client().get("/api/docs/").content.decode()
    assets = ASSET.findall(page)
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in url for url in assets)
    assert [url for url in assets if not url.startswith("/")] == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn(tmp_path):
    """gunicorn as docs/operating.md starts it (`-c config/gunicorn.py`), without
    DJANGO_SETTINGS_MODULE, after `collectstatic`."""
    env = production_env(tmp_path)
    collected = manage(env, "collectstatic", "--noinput")
    assert collected.returncode == 0, collected.stderr
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "config/gunicorn.py",
         "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def answering():
        assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
        try:
            return requests.get(f"{base}/nothing-here", headers=HTTPS, timeout=5) is not None
        except requests.ConnectionError:
            return None

    wait_for(answering, timeout=60, interval=0.2, message="gunicorn to answer")
    yield base
    proc.terminate()
    proc.wait(15)
    log.close()


@pytest.mark.slow
def test_gunicorn_serves_production_with_static_files(gunicorn):
    missing = requests.get(f"{gunicorn}/nothing-here", headers=HTTPS, timeout=10)
    assert missing.status_code == 404
    assert "Traceback" not in missing.text and "URLconf" not in missing.text  # DEBUG is off
    plain = requests.get(f"{gunicorn}/api/docs/", allow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")
    docs = requests.get(f"{gunicorn}/api/docs/", headers=HTTPS, timeout=10)
    assert docs.status_code == 200
    assets = [url for url in ASSET.findall(docs.text) if url.startswith("/static/")]
    assert len(assets) >= 3, assets
    for url in assets:
        served = requests.get(f"{gunicorn}{url}", headers=HTTPS, timeout=10)
        assert served.status_code == 200, url
        assert "max-age=315360000" in served.headers["Cache-Control"], url  # hashed name
    css = requests.get(f"{gunicorn}/static/admin/css/base.css", headers=HTTPS, timeout=10)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
