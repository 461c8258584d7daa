"""The bench's app server settings: the product's local settings with a URLconf that adds
the bare baseline view of the API scenario (bench/urls.py). Only the bench's gunicorn
runs with them; the product's URLs are untouched."""

from config.settings.local import *  # noqa: F401,F403

ROOT_URLCONF = "bench.urls"
