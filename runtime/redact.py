"""Credentials never leave the process: the one function that hides them in text.

``redact(text)`` replaces, anywhere in ``text``:

* the password of a URI's userinfo (``rtsp://user:secret@cam`` -> ``rtsp://user:***@cam``),
  or the whole userinfo when it has no colon, because a lone user part is usually a token
  (``https://ghp_x@host`` -> ``https://***@host``);
* the value of a secret-looking ``name=value`` pair, in a query string or a GStreamer
  property list (``?token=abc`` -> ``?token=***``, ``user-pw=abc`` -> ``user-pw=***``).

It is applied wherever a URI can be printed, logged, raised or stored: every
:class:`~segrt.errors.SegrtError` message, ``Source.uri`` / ``Sink.uri`` (the display
form), the log handler the CLI installs, ``-v`` tracebacks and the manifest's calibration
provenance. Only the code that opens a stream holds the raw URI. Redacting is idempotent,
and text without credentials comes back unchanged.
"""
from __future__ import annotations

import logging
import re

MASK = "***"

# scheme://netloc: the netloc ends at the first '/', '?', '#', whitespace or quote.
_URI_NETLOC = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<netloc>[^/?#\s'\"<>()\[\]]*)")
# name=value where the name says it holds a secret; the value ends at '&', whitespace or a quote.
_SECRET_PAIR = re.compile(
    r"(?<![A-Za-z0-9_.-])(?P<name>[A-Za-z0-9_.-]*"
    r"(?:token|passw|passwd|pwd|secret|api[_-]?key|apikey|user-pw|signature|credential|auth|session)"
    r"[A-Za-z0-9_.-]*|key|pass|sig|pw)=(?P<value>[^&\s'\"<>]+)",
    re.IGNORECASE)


def _netloc_redacted(match: re.Match[str]) -> str:
    netloc = match.group("netloc")
    userinfo, at, host = netloc.rpartition("@")
    if not at or not userinfo:
        return match.group(0)
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:{MASK}" if colon else MASK
    return f"{match.group('scheme')}{shown}@{host}"


def _pair_redacted(match: re.Match[str]) -> str:
    return f"{match.group('name')}={MASK}"


def redact(text: object) -> str:
    """``str(text)`` with URI passwords/userinfo and secret ``name=value`` values masked."""
    s = str(text)
    if "@" in s:
        s = _URI_NETLOC.sub(_netloc_redacted, s)
    if "=" in s:
        s = _SECRET_PAIR.sub(_pair_redacted, s)
    return s


def redacted_tree(value: object) -> object:
    """A copy of a JSON-like value (dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redacted_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redacted_tree(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record's final message (args included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
