"""Secrets never reach disk or MLflow. Hydra writes every override into `.hydra/` and
`multirun.yaml`, and MLflow logs the config: a key typed on the command line would land in
several files. So an override whose key looks like a secret, or a URL carrying a password, is
refused before Hydra writes anything; the message names the safe way."""

from __future__ import annotations

import os
import re

from runner.config.errors import UserError

# A key that holds a secret itself (`api_key`, `token`, `password`, ...). `*_env` keys name the
# environment variable that holds it, which is the safe way, so they are allowed.
# Matched against one key component: `access_token`, `hf_token`, `password`, `client_secret`, not
# `max_tokens` or `stop_token_ids` (a count and a list of ids are not secrets).
SECRET = re.compile(r"^(.*[_-])?(api[_-]?key|(secret|private|access)[_-]?key|token|secret|passw(or)?d|passphrase|"
                    r"credentials?|authorization|bearer|auth)$", re.I)
# scheme://user:password@host
URL_CREDENTIALS = re.compile(r"\b([a-z][a-z0-9+.-]*://)([^/\s:@]+):([^/\s@]+)@", re.I)
SAFE_WAY = ("put the secret in an environment variable and name it with backend.api_key_env / "
            "judge.api_key_env (tracking: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or "
            "MLFLOW_TRACKING_TOKEN)")


def secret_key(dotted: str) -> bool:
    return any(SECRET.match(part) for part in dotted.split("."))


def redact_url(text: str) -> str:
    """`http://user:pass@host` -> `http://user:***@host` (for anything shown, never for use)."""
    return URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{m.group(2)}:***@", text)


def check_overrides(overrides: list[str]) -> None:
    """Refuse, before Hydra writes anything, an override that would store a secret."""
    for o in overrides:
        key, _, value = o.partition("=")
        key = key.lstrip("+~")
        if secret_key(key):
            raise UserError(f"refusing '{key}=...' on the command line: Hydra and MLflow would store the secret "
                            f"in plain text; {SAFE_WAY}")
        if URL_CREDENTIALS.search(value):
            raise UserError(f"refusing {key}={redact_url(value)}: a password in a URL would be stored in plain text; "
                            f"{SAFE_WAY}")


def check_urls(urls: dict[str, str | None]) -> None:
    """Config-file URLs (`key -> url`): a password in one would reach MLflow's params and artifacts."""
    for key, url in urls.items():
        if url and URL_CREDENTIALS.search(str(url)):
            raise UserError(f"{key}={redact_url(str(url))} carries a password, which MLflow would store; {SAFE_WAY}")


def check_tracking_uri(uri: str | None) -> None:
    if uri and URL_CREDENTIALS.search(uri):
        raise UserError(f"tracking URI {redact_url(uri)} carries a password, which would be written to the sweep's "
                        f"files; {SAFE_WAY}")


def check_environment() -> None:
    check_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))
