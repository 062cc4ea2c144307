"""Passwords kept out of what the node shows: ``show-config``, and a configuration refusal quoting
a value or key, whose output is read, pasted into tickets and kept in logs."""

from __future__ import annotations

import re
from typing import Any

# user:password@ in a URL — the password up to the last @, even with / # ? in it, as the URL
# parsers read it — and a password given as a query parameter: the parts that are hidden.
_URL_PASSWORD = re.compile(r"(://[^/?#@:]*:).*(@[^@]*)$", re.DOTALL)
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|pwd|sslpassword)=)[^&#]*", re.IGNORECASE)


def redacted_text(text: str) -> str:
    """``text`` with the password of a URL in it shown as ``***``."""
    if "://" not in text:
        return text
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\2", text))


def redacted(value: Any) -> Any:
    """``value`` (mappings and lists of strings, as a configuration holds) with every URL's password
    shown as ``***``."""
    if isinstance(value, dict):
        return {redacted_text(k) if isinstance(k, str) else k: redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    if isinstance(value, str):
        return redacted_text(value)
    return value
