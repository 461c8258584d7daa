"""How entityflow talks to other systems: connectors behind one small interface.

Use `integrations.registry` to find a connector by slug (importing it registers the
built-in ones), `integrations.base` for the interface and data shapes,
`integrations.exceptions` for errors, `integrations.net` for guarded outbound HTTP and
`integrations.signing` for webhook signatures. Plain package: no models, no app config.
"""
