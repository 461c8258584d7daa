"""Inbound webhooks: `/hooks` + a webhook trigger's `config.path` starts its process."""
