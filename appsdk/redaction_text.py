"""The text the redaction detectors read, one byte per character, and the way back to it.

``appsdk.redaction`` matches bytes; what it reads of a text is rewritten first so that a secret
cannot hide in how it is written: look-alike hyphens and full-width ASCII read as ASCII,
invisible characters (zero-width, soft hyphen, bidi controls, variation selectors, tags) are
dropped, raw or escaped as JSON and Python write them, and the runs holding percent-escapes are
read decoded too. Each rewriting that changes lengths keeps an offset map, so a span found is
mapped back to what was written: a replacement covers the hidden characters with the secret.

Cheap on ordinary text: ASCII is one ``isascii`` test and one copy; other text one UTF-8 encode
and a few memchr, since a pattern testing each character costs 5-10 ns a character.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate, compress

__all__ = ["Span", "Way", "mapped", "views"]

Span = tuple[int, int, str]  # (start, end, label)

# Read as ASCII by str.replace (a memchr each): look-alike hyphens, and the full-width colon,
# which Chinese and Japanese text use too often to gate the full-width mapping below on.
_LOOKALIKES = (
    *((c, "-") for c in "\u2010\u2011\u2012\u2013\u2014\u2212\ufe63\uff0d"),
    ("\uff1a", ":"),
)
# Characters that render as nothing, so they can sit inside a key unseen: the soft hyphen,
# joiners, the marks, embeddings and isolates of bidirectional text, invisible operators,
# variation selectors, tags. Read as absent.
_INVISIBLE_RUN = re.compile(
    "([\xad\u034f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufe00-\ufe0f\ufeff"
    "\ufff9-\ufffb\U000e0000-\U000e007f\U000e0100-\U000e01ef]+)"
)
_FULL_WIDTH_RUN = re.compile("[\uff01-\uff5e]+")
_FROM_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
# A pattern testing each character costs 5-10 ns a character, so the rest are looked for in
# the UTF-8 bytes: each by the byte leading its encoding (one memchr, seldom there), then by a
# pattern led by that byte. Full width counts when it writes what a secret is made of
# (letters, digits, "+-./=@_"): a Chinese text's full-width comma and colon cost nothing.
_INVISIBLE_PROBES = "\xad\u061c\u180e"  # rare low bytes: "in" is a memchr
_INVISIBLE_UTF8 = (
    (0xCD, re.compile(rb"\xcd\x8f")),
    (0xE2, re.compile(rb"\xe2(?:\x80[\x8b-\x8f\xaa-\xae]|\x81[\xa0-\xaf])")),
    (0xF3, re.compile(rb"\xf3\xa0[\x80\x81\x84-\x87]")),
)
_EF_UTF8 = re.compile(
    rb"\xef(?:(?P<wide>\xbc[\x8b\x8d-\x99\x9d\xa0-\xba\xbf]|\xbd[\x81-\x9a])"
    rb"|\xb8[\x80-\x8f]|\xbb\xbf|\xbf[\xb9-\xbb])"
)
# The same characters as JSON (json.dumps escapes everything non-ASCII, a tag as a surrogate
# pair) or a Python repr writes them, since span attributes often hold JSON.
_ESCAPED = re.compile(
    r"(\\(?:u(?:201[0-4]|2212|fe63|ff(?:0[1-9a-f]|[1-4][0-9a-f]|5[0-9a-e])"
    r"|00ad|034f|061c|180e|200[b-f]|202[a-e]|206[0-9a-f]|fe0[0-9a-f]|feff|fff[9ab]"
    r"|db40\\ud(?:c[0-7]|d[0-9a-e])[0-9a-f])|U000e0(?:0[0-7]|1[0-9a-e])[0-9a-f]|xad))",
    re.IGNORECASE,
)
# Percent-encoding: ASCII a run at a time, else a UTF-8 sequence (one character) or one byte.
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_PERCENT_CHARACTERS = re.compile(  # led by "%", a literal SRE finds fast
    r"(%(?:[0-7][0-9a-f](?:%[0-7][0-9a-f])*+|[c-d][0-9a-f]%[89ab][0-9a-f]"
    r"|e[0-9a-f](?:%[89ab][0-9a-f]){2}|f[0-4](?:%[89ab][0-9a-f]){3}|[0-9a-f]{2}))",
    re.IGNORECASE,
)
_PERCENT_LEVELS = 2  # "%253D" is "%3D" is "="
_SPACE = re.compile(r"\s")


@dataclass(frozen=True, slots=True)
class _Offsets:
    """Where the pieces of a rewritten text came from, for text that lost or gained characters."""

    compared: list[int]  # where each piece starts in the rewritten text
    original: list[int]  # where it starts in the text before
    size: list[int]  # its length in the rewritten text
    width: list[int]  # its length before (6 for "\\u2011" read as "-")

    def span(self, span: Span) -> Span:
        start, end, label = span
        first = bisect_right(self.compared, start) - 1
        last = bisect_right(self.compared, end - 1) - 1
        into = (start - self.compared[first], end - self.compared[last])
        return (
            self.original[first] + into[0] * self.width[first] // self.size[first],
            self.original[last] + into[1] * self.width[last] // self.size[last],
            label,
        )


Way = tuple[_Offsets, ...]  # from the bytes read back to the text, the last step first


def views(text: str) -> Iterator[tuple[bytes, Way]]:
    """What the detectors read of ``text``, and the way back: the text as written and, when it
    holds percent-encoding, the runs that hold it decoded (once, then twice for "%253D")."""
    yield _comparable(text)
    if "%" not in text:
        return
    text, offsets = _percent_runs(text)  # "" when no "%" starts an escape
    decoding: Way = (offsets,)
    for _ in range(_PERCENT_LEVELS):
        text, decoded = _rewritten(text, _PERCENT_CHARACTERS, _percent_decoded)
        if decoded is None:
            return
        decoding = (decoded, *decoding)
        data, way = _comparable(text)
        yield data, (*way, *decoding)


def _percent_runs(text: str) -> tuple[str, _Offsets]:
    """The runs of ``text``, space to space, that hold percent escapes, one a line (runs less
    than a line apart are one), and the way back: prose with one URL decodes only the URL."""
    runs: list[tuple[int, int]] = []
    end = position = 0
    # A memchr to the first "%", then SRE from there: "%" repeated costs no Python per "%".
    while (at := text.find("%", position)) != -1 and (escape := _PERCENT.search(text, at)):
        at = escape.start()
        if runs and at - end < 80:
            start = runs.pop()[0]
        else:
            start = max(end, text.rfind(" ", end, at) + 1)
            start = max(start, text.rfind("\n", start, at) + 1)
        after = _SPACE.search(text, at + 3)
        end = position = len(text) if after is None else after.start()
        runs.append((start, end))
    sizes = [end - start for start, end in runs]
    return "\n".join(text[start:end] for start, end in runs), _Offsets(
        list(accumulate((size + 1 for size in sizes), initial=0))[:-1],
        [start for start, _ in runs],
        sizes,
        sizes,
    )


def mapped(spans: list[Span], way: Way) -> list[Span]:
    """``spans`` found in a view's bytes, as spans of the text the view was made of."""
    for offsets in way if spans else ():
        spans = [offsets.span(span) for span in spans]
    return spans


def _comparable(text: str) -> tuple[bytes, Way]:
    """One byte per character of ``text`` as the detectors read it, and the way back."""
    way: Way = ()
    if not text.isascii():
        text, offsets = _plain(text)
        way = () if offsets is None else (offsets,)
    if "\\" in text:
        text, offsets = _rewritten(text, _ESCAPED, lambda escapes: map(_unescaped, escapes))
        way = way if offsets is None else (offsets, *way)
    return text.encode("ascii", "replace"), way


def _plain(text: str) -> tuple[str, _Offsets | None]:
    """``text`` with look-alike hyphens and full-width ASCII as ASCII, invisible ones dropped."""
    for lookalike, ascii in _LOOKALIKES:
        if lookalike in text:
            text = text.replace(lookalike, ascii)  # one character for one: offsets unchanged
    hidden = any(mark in text for mark in _INVISIBLE_PROBES)
    raw = text.encode("utf-8", "surrogatepass")
    kinds = {match.lastgroup for match in _EF_UTF8.finditer(raw)} if 0xEF in raw else set()
    if "wide" in kinds:
        text = _FULL_WIDTH_RUN.sub(lambda run: run.group().translate(_FROM_FULL_WIDTH), text)
    if hidden or None in kinds or any(b in raw and p.search(raw) for b, p in _INVISIBLE_UTF8):
        return _rewritten(text, _INVISIBLE_RUN, lambda runs: [""] * len(runs))
    return text, None


def _unescaped(escape: str) -> str:
    code = int(escape[2:], 16) if len(escape) == 6 else 0
    if 0x2010 <= code <= 0x2014 or code in (0x2212, 0xFE63):
        return "-"
    return chr(code - 0xFEE0) if 0xFF01 <= code <= 0xFF5E else ""


def _percent_decoded(escapes: list[str]) -> list[str]:
    decoded = bytes.fromhex("".join(escapes).replace("%", ""))
    if decoded.isascii():  # decoded in C, then cut at the runs' ends
        text, ends = decoded.decode("ascii"), list(accumulate(len(e) // 3 for e in escapes))
        return [text[start:end] for start, end in zip([0, *ends], ends, strict=False)]
    return [_percent_decoded_one(escape) for escape in escapes]


def _percent_decoded_one(escape: str) -> str:
    decoded = bytes.fromhex(escape.replace("%", "")).decode("utf-8", "replace")
    # "%E2%80%8B" is one character, and an overlong encoding (say) is one U+FFFD
    return decoded if len(decoded) == 1 or escape[1] in "01234567" else "\ufffd"


def _rewritten(
    text: str, pattern: re.Pattern[str], replace: Callable[[list[str]], Iterable[str]]
) -> tuple[str, _Offsets | None]:
    """``text`` with the matches of ``pattern`` (one group: the whole match) replaced by what
    ``replace`` makes of them, and the way back (``None`` when nothing matched): a match reads
    as none, one character, or as many as its width spreads evenly over ("%41%42" as "AB").
    The offsets are built in C: "\\u200b" repeated is hostile input too."""
    parts = pattern.split(text)
    if len(parts) == 1:
        return text, None
    widths = list(map(len, parts))
    parts[1::2] = replace(parts[1::2])
    sizes = list(map(len, parts))
    return "".join(parts), _Offsets(  # the pieces that read as something, not "" (dropped)
        list(compress(accumulate(sizes, initial=0), sizes)),
        list(compress(accumulate(widths, initial=0), sizes)),
        list(compress(sizes, sizes)),
        list(compress(widths, sizes)),
    )
