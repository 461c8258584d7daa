"""Re-encrypt every stored secret with the current key, so that old keys can be dropped
from ENTITYFLOW_ENCRYPTION_KEY (docs/operating.md, "Rotating the key")."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from automation.connections import rotation, secrets
from entities.management.commands._progress import ProgressBar


class Command(BaseCommand):
    help = ("Re-encrypt every stored secret (connection credentials, webhook signing "
            "secrets, every *_encrypted field) with the first key of ENTITYFLOW_ENCRYPTION_KEY.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true",
            help="Read every secret and say what would be rewritten; write nothing.")

    def handle(self, *args, dry_run: bool, **options) -> None:
        if not (getattr(settings, "ENTITYFLOW_ENCRYPTION_KEY", "") or "").strip():
            self.stdout.write("ENTITYFLOW_ENCRYPTION_KEY is empty: the current key is the one "
                              "derived from SECRET_KEY.")
        keys = secrets.rotation_keys()
        fields = rotation.encrypted_fields()
        self.stdout.write("Fields: " + ", ".join(f.label for f in fields))
        bar = ProgressBar(self.stderr, rotation.stored_count(fields), label="secrets")
        report = rotation.rotate(fields, keys, dry_run=dry_run, progress=bar.update)
        bar.finish()
        self._summary(report, dry_run)

    def _summary(self, report: rotation.RotationReport, dry_run: bool) -> None:
        verb = "Would re-encrypt" if dry_run else "Re-encrypted"
        self.stdout.write(f"{verb} {report.rotated} secret(s); {report.current} already used "
                          f"the current key; {report.changed} changed meanwhile.")
        if report.unreadable:
            listed = "\n  ".join(report.unreadable)
            raise CommandError(
                f"{len(report.unreadable)} secret(s) could not be read with any key in "
                f"ENTITYFLOW_ENCRYPTION_KEY (nor the one derived from SECRET_KEY); keep the "
                f"old keys until they are fixed or re-entered:\n  {listed}")
        if not dry_run:
            self.stdout.write("Every stored secret now uses the current key: the older keys "
                              "may be removed from ENTITYFLOW_ENCRYPTION_KEY.")
