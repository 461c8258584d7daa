"""Webhook triggers: `/hooks` + a webhook trigger's `config.path` starts its process.

services finds the triggers by path, authenticates, dedupes and starts runs; views is
the endpoint; the config rules live with the definition (automation.definitions.
webhook_config)."""
