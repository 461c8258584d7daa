"""Webhook triggers: `/hooks` + a webhook trigger's `config.path` starts its process.

services finds the triggers by path, dedupes and starts runs; auth decides who may call
(a verification preset, a `?token=`, or a public webhook's rate); presets checks a
request the way each vendor signs it; views is the endpoint. The config rules live with
the definition (automation.definitions.webhook_config and webhook_verify)."""
