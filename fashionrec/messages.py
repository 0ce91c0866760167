"""Messages quoted from elsewhere (a server's error, an exception) into ours: on one line, and bounded, so
a long or multi-line reason (a traceback, a 1 MB id echoed back) never floods a log line or an error."""

from __future__ import annotations


def one_line(message: object, limit: int) -> str:
    """``message`` as text with its whitespace runs made single spaces, cut to ``limit`` characters
    (ending in "..." when cut)."""
    line = " ".join(str(message).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
