"""Secrets never reach disk or MLflow. Hydra writes every override into `.hydra/` and
`multirun.yaml`, and MLflow logs the config: a key typed on the command line would land in
several files. So an override whose key looks like a secret, or a URL carrying a password, is
refused before Hydra writes anything; the message names the safe way."""

from __future__ import annotations

import os
import re
from pathlib import Path

from runner.config.errors import UserError

# A key that holds a secret itself (`api_key`, `token`, `password`, ...). `*_env` keys name the
# environment variable that holds it, which is the safe way, so they are allowed.
# Matched against one key component: `access_token`, `hf_token`, `password`, `client_secret`, not
# `max_tokens` or `stop_token_ids` (a count and a list of ids are not secrets).
SECRET = re.compile(r"^(.*[_-])?(api[_-]?key|(secret|private|access)[_-]?key|token|secret|passw(or)?d|passphrase|"
                    r"credentials?|authorization|bearer|auth)$", re.I)
# scheme://userinfo@host: any userinfo is a credential (user:password, :password, or a token as
# the user name, as in https://TOKEN@host)
URL_CREDENTIALS = re.compile(r"\b([a-z][a-z0-9+.-]*://)([^/\s@]+)@", re.I)
# a mapping key inside an override's value: `+backend.headers={Authorization: "Bearer ..."}`
VALUE_KEY = re.compile(r"[{,]\s*['\"]?([A-Za-z0-9_.-]+)['\"]?\s*:")
SAFE_WAY = ("put the secret in an environment variable and name it with backend.api_key_env / "
            "judge.api_key_env (tracking: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or "
            "MLFLOW_TRACKING_TOKEN)")


def secret_key(dotted: str) -> bool:
    return any(SECRET.match(part) for part in dotted.split("."))


def redact_url(text: str) -> str:
    """`http://user:pass@host` -> `http://***@host` (for anything shown, never for use)."""
    return URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}***@", text)


def check_overrides(overrides: list[str]) -> None:
    """Refuse, before Hydra writes anything, an override that would store a secret."""
    for o in overrides:
        key, _, value = o.partition("=")
        key = key.lstrip("+~")
        inner = [k for k in VALUE_KEY.findall(value) if secret_key(k)]
        if secret_key(key) or inner:
            named = f"{key}.{inner[0]}" if inner and not secret_key(key) else key
            raise UserError(f"refusing '{named}=...' on the command line: Hydra and MLflow would store the secret "
                            f"in plain text; {SAFE_WAY}")
        if URL_CREDENTIALS.search(value):
            raise UserError(f"refusing {key}={redact_url(value)}: credentials in a URL would be stored in plain "
                            f"text; {SAFE_WAY}")


def check_urls(urls: dict[str, str | None]) -> None:
    """Config-file URLs (`key -> url`): a password in one would reach MLflow's params and artifacts."""
    for key, url in urls.items():
        if url and URL_CREDENTIALS.search(str(url)):
            raise UserError(f"{key}={redact_url(str(url))} carries credentials, which MLflow would store; {SAFE_WAY}")


class SecretError(UserError):
    """A secret in the composed config: what Hydra already wrote must be scrubbed."""


def check_config(tree, where: str = "") -> None:
    """The composed config, before Hydra writes it (a callback's on_run_start / on_multirun_start):
    a secret-named key with a value, or a URL with credentials, from any config file is refused."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            key = f"{where}.{k}" if where else str(k)
            if _holds_secret(k, v):
                raise SecretError(f"refusing {key}=... from a config file: Hydra and MLflow would store the secret "
                                  f"in plain text; {SAFE_WAY}")
            check_config(v, key)
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            check_config(v, f"{where}[{i}]")
    elif isinstance(tree, str) and URL_CREDENTIALS.search(tree):
        raise SecretError(f"{where}={redact_url(tree)} carries credentials, which Hydra and MLflow would store; "
                          f"{SAFE_WAY}")


def _holds_secret(key, value) -> bool:
    """A secret-named key with a value that could be one (not a switch such as `auth: false`)."""
    return secret_key(str(key)) and value not in (None, "") and not isinstance(value, (bool, dict, list))


def scrubbed(tree):
    """A copy with each secret-named value and each URL's credentials replaced by ***."""
    if isinstance(tree, dict):
        return {k: "***" if _holds_secret(k, v) else scrubbed(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [scrubbed(v) for v in tree]
    return redact_url(tree) if isinstance(tree, str) else tree


def scrub_hydra_dir(hydra_dir: Path) -> None:
    """Rewrite a job's `.hydra/*.yaml` without secrets: a swept config group's file is composed
    per job, after Hydra wrote it, so a job that refuses its config scrubs what was written."""
    import yaml

    for path in hydra_dir.glob("*.yaml"):
        try:
            path.write_text(yaml.safe_dump(scrubbed(yaml.safe_load(path.read_text())), sort_keys=False))
        except (OSError, yaml.YAMLError):
            path.unlink(missing_ok=True)  # never leave a secret behind a file we cannot rewrite


def check_tracking_uri(uri: str | None) -> None:
    if uri and URL_CREDENTIALS.search(uri):
        raise UserError(f"tracking URI {redact_url(uri)} carries credentials, which would be written to the sweep's "
                        f"files; {SAFE_WAY}")


def check_environment() -> None:
    check_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))
