"""What users see of an exception: its first line, never a traceback."""

from __future__ import annotations


def first_line(err: BaseException, limit: int | None = None) -> str:
    """The first non-empty line of ``str(err)`` (cut to ``limit`` characters when given; library
    messages quoted inside ours can be long), or the exception's type name when it says nothing."""
    text = str(err).strip()
    if not text:
        return type(err).__name__
    line = text.splitlines()[0]
    return line[:limit] if limit is not None else line
