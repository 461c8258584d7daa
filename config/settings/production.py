"""Production: what `config/wsgi.py` and `config/gunicorn.py` load unless
DJANGO_SETTINGS_MODULE says otherwise (docs/operating.md, "Production settings").

DEBUG is always off. The secrets and the host names must come from the environment: the
settings refuse to load without them, rather than run with a known key or answer for any
host. `manage.py check --deploy` is clean with these settings and those variables set.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import env_bool, env_list


def _missing(name: str, what: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"{name} is not set. The production settings (config.settings.production, the "
        f"default of config/wsgi.py and config/gunicorn.py) need {what}. For development, "
        f"use DJANGO_SETTINGS_MODULE=config.settings.local (see docs/operating.md)."
    )


DEBUG = False
SECRET_KEY = os.environ.get("SECRET_KEY", "").strip()
if not SECRET_KEY:
    raise _missing("SECRET_KEY", "a long random secret, the same on every web server and "
                   "worker; make one with: python3 -c \"import secrets; "
                   "print(secrets.token_urlsafe(50))\"")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    raise _missing("ALLOWED_HOSTS", "the host names this site answers for, comma-separated "
                   "(e.g. ALLOWED_HOSTS=flow.example.com)")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# HTTPS only. Behind a proxy that ends TLS, gunicorn takes the scheme from the proxy's
# X-Forwarded-Proto when the proxy's address is in FORWARDED_ALLOW_IPS (default: this host).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Load balancers and Prometheus often reach the app server itself, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 86400)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

# Static files: `manage.py collectstatic` once per release, then whitenoise (in
# MIDDLEWARE) serves them from STATIC_ROOT, compressed, under names that carry a hash of
# their content so browsers may cache them for good.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
