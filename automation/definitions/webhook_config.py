"""What a webhook trigger's config must hold to be served (checked when a process is
saved), and its credentials, which no output shows and a definition sent back keeps.
The webhook trigger (automation.triggers.webhooks) reads the method the same way."""

import re

from automation.definitions.webhook_verify import SECRET_KEYS as SIGNING_SECRET_KEYS
from automation.definitions.webhook_verify import check_verify

METHODS = ("POST", "PUT", "PATCH", "GET", "DELETE")
MAX_PATH_LENGTH = 300  # ProcessTrigger.path
MIN_TOKEN_LENGTH = 16
RESPONDS = ("accepted", "result")
# a synchronous reply waits at most 30 s (docs/user-guide/triggers.md, Synchronous replies)
MAX_WAIT_MS = 30_000
DEFAULT_WAIT_MS = 10_000
_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]+$")


def validate_webhook_config(config: object, *, prefix: str = "config") -> dict[str, list[str]]:
    """Field errors of a webhook trigger's config, keyed by path (`<prefix>.path`).

    A webhook is open only when it says `public: true`. Otherwise it needs `verify` (a
    vendor's preset or `hmac`, webhook_verify), `validateSignature: true` with a
    `secret` (the sender signs like our outbound webhooks), or a `token` of at least 16
    characters that callers pass as `?token=`.
    """
    if not isinstance(config, dict):
        return {prefix: ["config must be an object."]}
    errors: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        errors.setdefault(f"{prefix}.{key}", []).append(message)

    path = config.get("path")
    if not isinstance(path, str) or not path:
        add("path", "A webhook trigger needs config.path.")
    elif not _PATH.match(path) or "//" in path:
        add("path", "The path must start with '/' and hold only URL path characters, "
                    "for example /webhooks/stripe.")
    elif len(path) > MAX_PATH_LENGTH:
        add("path", f"The path is longer than {MAX_PATH_LENGTH} characters.")
    method = config.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        add("method", f"The method must be one of {', '.join(METHODS)}.")
    _check_credentials(config, add)
    _check_reply(config, add)
    return errors


def _check_reply(config: dict, add) -> None:
    """`respond: "result"` answers with the run's result when it ends within `waitMs`."""
    respond = config.get("respond", "accepted")
    if respond not in RESPONDS:
        add("respond", 'respond must be "accepted" (202 at once) or "result" (wait for '
                       "the run's result).")
        return
    wait_ms = config.get("waitMs")
    if wait_ms is None:
        return
    if respond != "result":
        add("waitMs", 'waitMs applies only with respond: "result".')
    elif (not isinstance(wait_ms, int) or isinstance(wait_ms, bool)
          or not 1 <= wait_ms <= MAX_WAIT_MS):
        add("waitMs", f"waitMs must be a whole number of milliseconds from 1 to {MAX_WAIT_MS}.")


def reply_wait_seconds(config: object) -> float:
    """How long a delivery waits for its run's result (0: answer 202 at once)."""
    if not isinstance(config, dict) or config.get("respond") != "result":
        return 0
    wait_ms = config.get("waitMs", DEFAULT_WAIT_MS)
    if not isinstance(wait_ms, int) or isinstance(wait_ms, bool):
        return DEFAULT_WAIT_MS / 1000
    return max(0, min(wait_ms, MAX_WAIT_MS)) / 1000


def _check_credentials(config: dict, add) -> None:
    """A signature (`verify`, or `validateSignature` with a `secret`), a `?token=`, or
    an explicit `public: true` with neither."""
    signed = config.get("validateSignature", False)
    if not isinstance(signed, bool):
        add("validateSignature", "validateSignature must be true or false.")
    secret, token = config.get("secret"), config.get("token")
    verify = config.get("verify")
    if verify is not None:
        check_verify(config, add)
    elif signed is True and (not isinstance(secret, str) or not secret):
        add("secret", "A signed webhook needs the secret its sender signs with.")
    if token is not None and (not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH):
        add("token", f"The token must be a string of at least {MIN_TOKEN_LENGTH} characters.")
    public = config.get("public", False)
    if not isinstance(public, bool):
        add("public", "public must be true or false.")
    elif public:
        if verify is not None or signed is True or token is not None:
            add("public", "A public webhook is not verified: remove public, or remove "
                          "verify, validateSignature and token.")
    elif signed is not True and token is None and verify is None:
        add("token", "A webhook needs validateSignature with a secret, or a token.")


def is_public(config: object) -> bool:
    """A webhook trigger anyone may call (config.public): warned about in the admin and
    rate limited per path."""
    return isinstance(config, dict) and config.get("public") is True


def normalize_method(config: dict) -> str:
    """The HTTP method a webhook trigger listens for (POST unless it names another)."""
    method = config.get("method") or "POST"
    return method.upper() if isinstance(method, str) else "POST"


# --- credentials: never shown, kept when a client sends the definition back ----------

SECRET_KEYS = (*SIGNING_SECRET_KEYS, "token")


def _is_webhook(trigger: object) -> bool:
    return (isinstance(trigger, dict) and trigger.get("type") == "webhook"
            and isinstance(trigger.get("config"), dict))


def redact_triggers(triggers: object) -> object:
    """The triggers without the secret and token of webhook triggers (for any output)."""
    if not isinstance(triggers, list):
        return triggers
    return [{**t, "config": {k: v for k, v in t["config"].items() if k not in SECRET_KEYS}}
            if _is_webhook(t) else t for t in triggers]


def keep_stored_secrets(triggers: object, stored: object) -> object:
    """`triggers` as sent, with each webhook trigger's missing secret and token taken
    from the stored webhook trigger on the same path (and method, when several share
    it). Outputs never show credentials, so a definition read, changed and sent back
    must not lose them; an explicit null removes one."""
    if not isinstance(triggers, list):
        return triggers
    by_key: dict[tuple, dict] = {}
    for old in stored if isinstance(stored, list) else []:
        if _is_webhook(old):
            config = old["config"]
            by_key.setdefault((config.get("path"), normalize_method(config)), config)
            by_key.setdefault((config.get("path"),), config)
    return [_with_stored_secrets(t, by_key) if _is_webhook(t) else t for t in triggers]


def _with_stored_secrets(trigger: dict, by_key: dict[tuple, dict]) -> dict:
    config = dict(trigger["config"])
    path = config.get("path")
    old = by_key.get((path, normalize_method(config))) or by_key.get((path,)) or {}
    for key in SECRET_KEYS:
        if key not in config and key in old:
            config[key] = old[key]
        elif key in config and config[key] is None:
            del config[key]
    return {**trigger, "config": config}
