"""Reading answers within bounds, shared by sync and async: no I/O here.

The client reads the raw bytes itself and decodes them here, so every limit applies to what
the answer becomes, not to what the wire says:

- :class:`Decoder` undoes ``Content-Encoding`` in pieces of at most 64 KiB, so a gzip bomb
  with a small ``Content-Length`` is stopped at the limit, not inflated whole first (httpx
  inflates each network read in one go);
- :class:`EventParser` splits server-sent events out of the decoded bytes, counting every byte
  (comments and a line that never ends included) against the limit; httpx-sse reads lines
  through httpx's line decoder, which holds a line of any length in memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

__all__ = [
    "ACCEPT_ENCODING",
    "BodyReader",
    "Decoder",
    "EventParser",
    "LimitExceeded",
    "UnsupportedEncoding",
]

ACCEPT_ENCODING = "gzip, deflate"
"""What typed calls accept: the encodings :class:`Decoder` can bound."""
_PIECE = 64 * 1024


class LimitExceeded(Exception):
    """More decoded bytes than allowed; ``size`` is how many were decoded when it stopped."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class UnsupportedEncoding(Exception):
    """A ``Content-Encoding`` the client did not ask for and cannot bound."""


class Decoder:
    """Undoes ``Content-Encoding`` (identity, gzip, deflate) in bounded pieces."""

    __slots__ = ("_inflate", "_retry_raw", "passthrough")

    def __init__(self, content_encoding: str | None) -> None:
        encoding = (content_encoding or "identity").strip().lower()
        self._retry_raw = False
        self.passthrough = encoding in ("", "identity")
        """Nothing to undo: the raw bytes are the answer."""
        if self.passthrough:
            self._inflate: zlib._Decompress | None = None
        elif encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            # "deflate" is zlib-wrapped by the RFC, raw in practice more often than not.
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS)
            self._retry_raw = True
        else:
            raise UnsupportedEncoding(encoding)

    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes of ``data``, in pieces of at most 64 KiB."""
        inflate = self._inflate
        if inflate is None:
            if data:
                yield data
            return
        try:
            piece = inflate.decompress(data, _PIECE)
        except zlib.error:
            if not self._retry_raw:
                raise
            self._inflate = inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            piece = inflate.decompress(data, _PIECE)
        self._retry_raw = False
        while True:
            if piece:
                yield piece
            if not inflate.unconsumed_tail:
                return
            piece = inflate.decompress(inflate.unconsumed_tail, _PIECE)


class EventParser:
    """Server-sent events from decoded bytes: the ``data`` of each complete event.

    Comments (keep-alives) and other fields are read and dropped; every byte counts toward
    ``max_bytes``, so neither a flood of comments nor a line without an end can grow past it.
    """

    __slots__ = ("_data", "_pending", "_skip_lf", "max_bytes", "received")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.received = 0
        self._pending = bytearray()
        self._skip_lf = False
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        """The data of every event ``chunk`` completes (often none: a comment, half a line).

        Raises:
            LimitExceeded: the stream grew past ``max_bytes``.
        """
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise LimitExceeded(self.received)
        if self._skip_lf:
            # The previous chunk ended in CR, which ended its line: a LF now is its other half.
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\n" not in chunk and b"\r" not in chunk:
            # Part of a line: grow it in place (a long line is not copied once per read).
            self._pending += chunk
            return []
        buffer = bytes(self._pending) + chunk if self._pending else chunk
        if b"\r" in buffer:
            self._skip_lf = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = buffer.split(b"\n")
        self._pending = bytearray(rest)
        events: list[str] = []
        for line in lines:
            self._line(line, events)
        return events

    def _line(self, line: bytes, events: list[str]) -> None:
        if not line:
            if self._data:
                events.append("\n".join(self._data))
                self._data = []
            return
        if line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:].decode() if value[:1] == b" " else value.decode())
        # Comments (":"), event:, id: and retry: carry nothing a completion needs.


class BodyReader:
    """Collects a body as it is read raw, decoded, within its limit (no I/O)."""

    __slots__ = ("body", "decoder", "error_body", "limit")

    def __init__(self, content_encoding: str | None, limit: int, error_body: bool) -> None:
        self.decoder = Decoder(content_encoding)
        self.limit = limit
        self.error_body = error_body
        self.body = bytearray()

    def add(self, raw: bytes) -> bool:
        """Add ``raw``; True to stop reading. Past the limit an answer raises
        :class:`LimitExceeded`, while an error body is cut (its start says enough)."""
        body = self.body
        for piece in (raw,) if self.decoder.passthrough else self.decoder.decode(raw):
            body += piece
            if len(body) > self.limit:
                if self.error_body:
                    del body[self.limit :]
                    return True
                raise LimitExceeded(len(body))
        return False
