"""The WSGI application for app servers (gunicorn: `gunicorn -c config/gunicorn.py config.wsgi`).

Production settings unless DJANGO_SETTINGS_MODULE says otherwise: an app server started
without it must not run with DEBUG on and a development key. `manage.py` (runserver,
`dev.py run`) keeps the local settings. See docs/operating.md, "Production settings".
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
application = get_wsgi_application()
