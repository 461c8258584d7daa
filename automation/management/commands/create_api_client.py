"""manage.py create_api_client NAME [--json] [--rate-limit N] [--scopes read,run]:
prints the key and the secret once; only a hash of the secret is stored. Without
--scopes the client has every scope (docs/rest-api.md#scopes)."""

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from automation.services.api_auth import api_client_create


class Command(BaseCommand):
    help = "Create an API client and print its key and secret (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--json", action="store_true",
                            help="Print {name, key, secret} as JSON.")
        parser.add_argument("--rate-limit", type=int, default=None,
                            help="Requests per minute (default 600; 0 = unlimited).")
        parser.add_argument("--scopes", default=None,
                            help="Comma-separated: read, run, define, admin (default: all).")

    def handle(self, *args, **options):
        scopes = None
        if options["scopes"] is not None:
            scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        try:
            client, secret = api_client_create(name=options["name"], scopes=scopes,
                                               rate_limit_per_minute=options["rate_limit"])
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if options["json"]:
            printed = {"name": client.name, "key": client.key, "secret": secret,
                       "scopes": client.scopes}
            self.stdout.write(json.dumps(printed))
            return
        self.stdout.write(f"API client '{client.name}' created.")
        self.stdout.write(f"key:    {client.key}")
        self.stdout.write(f"scopes: {','.join(client.scopes)}")
        self.stdout.write(f"secret: {secret}")
        self.stdout.write("Store the secret now: it is not shown again.")
