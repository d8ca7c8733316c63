"""Secrets never reach a file, a log or a message: the one place that masks them.

In plain words:
  - Credentials inside a URL (`https://user:pass@host/v1`) become `https://***@host/v1`.
  - Text that is shown or saved (error lines, summaries) also loses anything shaped like an OpenAI
    key (`sk-...`) and the credentials of an HTTP Authorization header a server echoed
    (`Basic <base64 of user:password>`, `Bearer <token>`).
  - `secret_forms` lists every form one secret can be echoed in (itself, URL-quoted, base64 inside
    a Basic header); the API client masks each of them wherever it shows or saves a server's text,
    replies included.
  - A flag whose name contains key, token, secret or password holds a secret when its value is
    text: run records keep `***` instead (`--judge_api_key`, `--hub_token`), and a command line
    copied into a file (wandb does that) gets the same treatment (`scrub_argv`).
"""

from __future__ import annotations

import re

MASK = "***"
SECRET_WORDS = ("key", "token", "secret", "password")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]+@")
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}")
_AUTH_HEADER = re.compile(r"(?i)\b(basic|bearer)(\s+)[A-Za-z0-9+/=._~\-]{6,}")


def mask_url(url: str | None) -> str | None:
    """`url` with any user name and password replaced by *** (`http://***@host/v1`)."""
    return _URL_USERINFO.sub(rf"\1{MASK}@", url) if url else url


def mask_secrets(text: str) -> str:
    """`text` with URL credentials and `sk-...` API keys masked; for anything shown or saved."""
    text = _AUTH_HEADER.sub(rf"\1\2{MASK}", _URL_USERINFO.sub(rf"\1{MASK}@", text))
    return _KEY_LIKE.sub("sk-***", text)


def secret_forms(*secrets: str | None, url: str | None = None) -> list[str]:
    """Every text form in which these secrets (an API key; the user and password inside `url`) may
    come back from a server: as they are, the password URL-quoted and unquoted, and `user:password`
    and its base64 (what HTTP basic auth sends). Longest first, forms shorter than 4 characters left out."""
    import base64
    from urllib.parse import unquote, urlsplit

    forms = {s for s in secrets if s}
    if url:
        try:
            parts = urlsplit(url)
            user, password = parts.username, parts.password
        except ValueError:
            user = password = None
        if password:  # the user name alone is no secret (and may be a common word)
            forms.update({password, unquote(password)})
        if user is not None and password is not None:
            pair = f"{unquote(user)}:{unquote(password)}"
            forms.update({pair, base64.b64encode(pair.encode()).decode()})
    return sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)


# Flags named like secrets that hold none (a tokenizer's special tokens).
NOT_SECRET = frozenset({"stop_token", "pad_token", "eos_token", "bos_token"})


def is_secret_name(name: str) -> bool:
    """A flag name that announces a secret: one of its words is key, token, secret or password
    (judge_api_key, hub_token, wandb_apikey, db_password), not `max_tokens` or `stop_token`."""
    low = name.lower().lstrip("-")
    if low in NOT_SECRET:
        return False
    words = re.split(r"[_\-.]", low)
    return any(w in SECRET_WORDS or w.endswith(("apikey", "password", "secret")) for w in words)


def mask_record(value, name: str = ""):
    """A copy of `value` (dicts and lists walked) with secret-named texts and URL credentials masked.
    Numbers, booleans and None stay (`max_new_tokens: 512` is no secret)."""
    if isinstance(value, dict):
        return {k: mask_record(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_record(v, name) for v in value]
    if isinstance(value, str):
        if value and is_secret_name(name):
            return MASK
        return mask_url(value)
    return value


def scrub_argv(argv: list[str]) -> list[str]:
    """The command line with the values of secret flags (`--x_key V`, `--x_key=V`) and URL
    credentials masked."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("--"):
            out.append(MASK)
            hide_next = False
            continue
        hide_next = False
        if arg.startswith("--"):
            name, eq, _ = arg.partition("=")
            if is_secret_name(name):
                if eq:
                    out.append(f"{name}={MASK}")
                else:
                    out.append(arg)
                    hide_next = True
                continue
        out.append(mask_url(arg))
    return out
