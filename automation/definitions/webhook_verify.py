"""How an inbound webhook proves where it comes from: `config.verify` of a webhook trigger.

A preset names a vendor's documented scheme (docs/user-guide/triggers.md, one section
each); `hmac` describes anything else. The webhook trigger (automation.triggers.webhooks)
reads a trigger's `Verification` from here, so what a saved process promises and what a
request is checked against cannot drift apart. Checked when a process is saved.
"""

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass

PRESETS = ("entityflow", "standard-webhooks", "stripe", "github", "shopify", "slack", "token",
           "hmac")
TIMESTAMPED = ("entityflow", "standard-webhooks", "stripe", "slack")
ALGORITHMS = ("sha1", "sha256", "sha512")
ENCODINGS = ("hex", "base64")
DEFAULT_TOLERANCE = 300
MAX_TOLERANCE = 3600
STANDARD_PREFIX = "whsec_"
SECRET_KEYS = ("secret", "previousSecret")
# The options each preset takes besides `preset` (JSON name -> Verification field).
OPTIONS = {"header": "header", "algorithm": "algorithm", "encoding": "encoding",
           "prefix": "prefix", "timestampHeader": "timestamp_header",
           "signedPayload": "signed_payload", "tolerance": "tolerance",
           "deliveryHeader": "delivery_header"}
ALLOWED = {**{name: ("tolerance",) for name in TIMESTAMPED}, "github": (), "shopify": (),
           "token": ("header",), "hmac": tuple(OPTIONS)}
_HEADER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class Verification:
    """One trigger's verification with every default filled in."""

    preset: str
    header: str = ""
    algorithm: str = "sha256"
    encoding: str = "hex"
    prefix: str = ""
    timestamp_header: str = ""
    signed_payload: str = "{body}"
    tolerance: int = DEFAULT_TOLERANCE
    delivery_header: str = ""


def verification_of(config: dict) -> Verification | None:
    """What a (valid) trigger config verifies: `verify`, else `entityflow` when
    `validateSignature` is true (definitions from before presets keep working), else
    None (a `?token=` webhook or a public one)."""
    verify = config.get("verify")
    if verify is None:
        return Verification("entityflow") if config.get("validateSignature") is True else None
    if isinstance(verify, str):
        return Verification(verify)
    options = {OPTIONS[key]: value for key, value in verify.items() if key in OPTIONS}
    if verify["preset"] == "hmac" and options.get("timestamp_header") and \
            "signed_payload" not in options:
        options["signed_payload"] = "{timestamp}.{body}"
    return Verification(verify["preset"], **options)


def trigger_secrets(config: dict) -> list[str]:
    """The secrets a request may be signed with: `secret`, and `previousSecret` while a
    rotation overlaps (both are accepted until the old one is removed)."""
    return [config[key] for key in SECRET_KEYS if isinstance(config.get(key), str) and config[key]]


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret, read as the `standardwebhooks`
    package reads it: `whsec_` and base64, padding optional."""
    return base64.b64decode(secret.removeprefix(STANDARD_PREFIX) + "==")


# --- validation at save time --------------------------------------------------------

Add = Callable[[str, str], None]


def check_verify(config: dict, add: Add) -> None:
    """Field errors of `config.verify` and of the secrets it needs (keys relative to
    the trigger's config: `verify.header`, `secret`)."""
    verify = config.get("verify")
    if isinstance(verify, str):
        verify = {"preset": verify}
    if not isinstance(verify, dict):
        add("verify", f"verify must be a preset name ({', '.join(PRESETS)}) or an object "
                      "with `preset` and its options.")
        return
    preset = verify.get("preset")
    if preset not in PRESETS:
        add("verify.preset", f"The preset must be one of {', '.join(PRESETS)}.")
        return
    for key in sorted(set(verify) - {"preset", *ALLOWED[preset]}, key=str):
        allowed = ", ".join(ALLOWED[preset]) or "no options"
        add(f"verify.{key}", f"Unknown option '{key}' for the {preset} preset; it takes "
                             f"{allowed}.")
    _check_options(preset, verify, add)
    _check_secrets(preset, config, add)
    if config.get("validateSignature") is False:
        add("validateSignature", "validateSignature is false but config.verify asks for a "
                                 "signature; remove one of them.")


def _check_options(preset: str, verify: dict, add: Add) -> None:
    for key in ("header", "timestampHeader", "deliveryHeader"):
        value = verify.get(key)
        if value is not None and (not isinstance(value, str) or not _HEADER.match(value)):
            add(f"verify.{key}", f"{key} must be an HTTP header name such as X-Signature.")
    if preset in ("token", "hmac") and "header" not in verify:
        add("verify.header", f"The {preset} preset needs the header the sender puts it in.")
    if "tolerance" in verify:
        value = verify["tolerance"]
        if not isinstance(value, int) or isinstance(value, bool) or \
                not 1 <= value <= MAX_TOLERANCE:
            add("verify.tolerance", f"tolerance must be a whole number of seconds from 1 "
                                    f"to {MAX_TOLERANCE}.")
    if verify.get("algorithm", "sha256") not in ALGORITHMS:
        add("verify.algorithm", f"algorithm must be one of {', '.join(ALGORITHMS)}.")
    if verify.get("encoding", "hex") not in ENCODINGS:
        add("verify.encoding", f"encoding must be one of {', '.join(ENCODINGS)}.")
    prefix = verify.get("prefix", "")
    if not isinstance(prefix, str) or len(prefix) > 50:
        add("verify.prefix", "prefix must be a string of at most 50 characters.")
    if preset == "hmac":
        _check_template(verify, add)


def _check_template(verify: dict, add: Add) -> None:
    """`signedPayload` holds `{body}` once, and `{timestamp}` when (and only when) a
    timestamp header is named."""
    stamped = bool(verify.get("timestampHeader"))
    template = verify.get("signedPayload", "{timestamp}.{body}" if stamped else "{body}")
    if not isinstance(template, str):
        add("verify.signedPayload", "signedPayload must be a string such as {timestamp}.{body}.")
        return
    names = _PLACEHOLDER.findall(template)
    if names.count("body") != 1 or set(names) - {"body", "timestamp"}:
        add("verify.signedPayload", "signedPayload must hold {body} once and may hold "
                                    "{timestamp}; no other placeholders.")
    if ("timestamp" in names) != stamped:
        add("verify.signedPayload", "Use {timestamp} in signedPayload exactly when a "
                                    "timestampHeader is named: an unsigned timestamp "
                                    "proves nothing.")


def _check_secrets(preset: str, config: dict, add: Add) -> None:
    secret = config.get("secret")
    if not isinstance(secret, str) or not secret:
        add("secret", "A token webhook needs the token callers send, in config.secret."
            if preset == "token" else "A signed webhook needs the secret its sender signs with.")
    previous = config.get("previousSecret")
    if previous is not None and (not isinstance(previous, str) or not previous):
        add("previousSecret", "previousSecret must be a non-empty string (or left out).")
    if preset != "standard-webhooks":
        return
    for key in SECRET_KEYS:
        value = config.get(key)
        if isinstance(value, str) and value and not _is_standard_secret(value):
            add(key, "A Standard Webhooks secret is whsec_ followed by base64, for example "
                     "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw.")


def _is_standard_secret(secret: str) -> bool:
    if not secret.startswith(STANDARD_PREFIX):
        return False
    body = secret.removeprefix(STANDARD_PREFIX)
    try:
        return bool(base64.b64decode(body + "=" * (-len(body) % 4), validate=True))
    except (binascii.Error, ValueError):
        return False
