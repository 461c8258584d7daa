"""Connections to outside systems: their credentials, encrypted at rest (`secrets`), and
the services that create, update, test and resolve them (`services`). Low in the layers
(docs/architecture.md): function steps resolve connections while a step runs, and the
admin, the API and the webhook service use them too."""
