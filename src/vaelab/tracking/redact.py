"""Passwords out of URLs: ``scheme://user:password@host`` becomes ``scheme://user:***@host``.

Imports nothing heavy, so that modules which only redact (the sweep's storage) do not load MLflow or Keras.
"""

from __future__ import annotations

import re

# scheme://user:password@host -> the password group is everything up to the last "@" of the authority.
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/?#@:\s]*:)[^/?#\s]*@")


def redact_url(url: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` in ``url`` with ``***``."""
    return _CREDENTIALS.sub(r"\g<head>***@", str(url))
