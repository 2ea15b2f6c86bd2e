"""The one boundary that makes text from people and models storable and sendable.

PostgreSQL refuses U+0000 in text columns; SQLite, JSON encoders and the
platforms refuse lone UTF-16 surrogates (they cannot be encoded as UTF-8). Both
are replaced with U+FFFD, so the person sees where something was, and the rest
of the text is kept. A surrogate pair (as a JSON decoder may leave two halves)
is joined into its character.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"

_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` with NUL and lone surrogates replaced by U+FFFD."""
    if _UNSAFE.search(text) is None:  # the common case: nothing to copy
        return text
    # Through UTF-16 with surrogatepass: a valid pair becomes its character, a
    # lone half decodes as U+FFFD.
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return joined.replace("\x00", REPLACEMENT)


def decode_lenient(data: bytes) -> str:
    """Bytes from outside (a pipe, a file) as storable text: invalid UTF-8 becomes
    U+FFFD instead of ending whatever reads it."""
    return storable(data.decode("utf-8", "replace"))


class StreamCleaner:
    """`storable` for text that arrives in pieces: a high surrogate at the end of
    one piece may be completed by the next, so it is held back until then."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        piece = self._held + piece
        self._held = ""
        if piece and "\ud800" <= piece[-1] <= "\udbff":
            piece, self._held = piece[:-1], piece[-1]
        return storable(piece)

    def flush(self) -> str:
        """What is still held, at the end of the stream."""
        held, self._held = self._held, ""
        return storable(held)
