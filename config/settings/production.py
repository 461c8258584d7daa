"""Production: secrets must come from the environment."""

import os

from .base import *  # noqa: F401,F403

SECRET_KEY = os.environ["SECRET_KEY"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
