"""`manage.py migrate`, which from the command line also migrates every other database
(on SQLite the task queue's own file, config/queue.py), those first: one command sets
everything up, as before the queue had a file of its own, and the data migrations of
`default` that write django-q2 schedules find the queue's tables there. Called from code
(the test runner, the bench) it is Django's migrate, one database at a time."""

from django.conf import settings
from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import DEFAULT_DB_ALIAS


class Command(DjangoMigrate):
    help = (DjangoMigrate.help + " Without --database (and without an app label) it migrates "
            "every configured database, the task queue's too.")

    def handle(self, *args, **options):
        every = getattr(self, "_called_from_command_line", False) and not options.get(
            "app_label") and options["database"] == DEFAULT_DB_ALIAS
        for alias in settings.DATABASES if every else ():
            if alias != DEFAULT_DB_ALIAS:
                if options["verbosity"]:
                    self.stdout.write(self.style.MIGRATE_HEADING(f"Database {alias!r}:"))
                super().handle(*args, **{**options, "database": alias})
        super().handle(*args, **options)
