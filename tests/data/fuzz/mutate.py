"""Mutations of the seed files, and the oracle that says whether a mutant holds NaN/inf.

Each mutation takes a :class:`Draw` (random choices: hypothesis's ``st.data()`` in the test,
``random.Random`` in the benchmark) and a seed, and returns the mutant's bytes and a short
description of what was done (``"truncate at 212"``) for the failure message.
"""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

from tests.data.fuzz.make_seeds import Count, Seed, lzf_decompress, lzf_literal

T = TypeVar("T")


class Draw(Protocol):
    def integer(self, lo: int, hi: int) -> int: ...  # inclusive

    def choice(self, options: Sequence[T]) -> T: ...


class RandomDraw:
    """Draws from ``random.Random`` (the benchmark)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]


class HypothesisDraw:
    """Draws from hypothesis's ``st.data()`` (the test: shrinkable, reproducible)."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def choice(self, options: Sequence[T]) -> T:
        return self.data.draw(self.st.sampled_from(list(options)))


Mutant = tuple[bytes, list[str]]


def _position(draw: Draw, seed: Seed, data: bytes, end_ok: bool = False) -> int:
    """A byte position, half the time inside the text header (where parsers decide things)."""
    top = len(data) if end_ok else max(len(data) - 1, 0)
    if seed.header_end and seed.header_end <= len(data) and draw.integer(0, 1):
        return draw.integer(0, min(seed.header_end, top))
    return draw.integer(0, top)


def truncate(draw: Draw, seed: Seed, data: bytes) -> Mutant:
    if seed.header_end and draw.integer(0, 2) == 0:  # just around the end of the header
        at = min(max(seed.header_end + draw.integer(-3, 3), 0), len(data) - 1)
    else:
        at = draw.integer(0, max(len(data) - 1, 0))
    return data[:at], [f"truncate at {at} of {len(data)}"]


def empty(draw: Draw, seed: Seed, data: bytes) -> Mutant:
    return b"", ["zero-length file"]


def flip_bytes(draw: Draw, seed: Seed, data: bytes) -> Mutant:
    out = bytearray(data)
    what = []
    for _ in range(draw.integer(1, 4)):
        if not out:
            break
        at = min(_position(draw, seed, bytes(out)), len(out) - 1)
        mask = draw.choice([0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF])
        out[at] ^= mask
        what.append(f"xor byte {at} with {mask:#04x}")
    return bytes(out), what


_HUGE = (2**31 - 1, 2**31, 2**32 - 1, 2**32, 10**9, 2**63 - 1, 2**64 - 1)


def _new_count(draw: Draw, old: int) -> int:
    return draw.choice(
        [0, 1, max(old - 1, 0), old + 1, 2 * old, old + 1000, *_HUGE, draw.integer(0, 1 << 40)]
    )


def header_count(draw: Draw, seed: Seed, data: bytes) -> Mutant:
    count: Count = draw.choice(seed.counts)
    if count.fmt is None:  # decimal digits
        old = int(data[count.start : count.end])
        new: Any = _new_count(draw, old)
        text = draw.choice([str(new), "-1", str(new), "1e3", "0x10", str(10**30)])
        out = data[: count.start] + text.encode() + data[count.end :]
        return out, [f"{count.name} {old} -> {text}"]
    (old,) = struct.unpack_from(count.fmt, data, count.start)
    size = struct.calcsize(count.fmt)
    signed = count.fmt[-1].islower()
    new = _new_count(draw, old) % (1 << (8 * size))
    if signed and new >= 1 << (8 * size - 1):
        new -= 1 << (8 * size)
    buf = bytearray(data)
    struct.pack_into(count.fmt, buf, count.start, new)
    return bytes(buf), [f"{count.name} {old} -> {new}"]


def _lines(data: bytes, end: int) -> list[tuple[int, int]]:
    """(start, stop) of the lines (with their line break) in ``data[:end]``."""
    spans, at = [], 0
    while at < end:
        nl = data.find(b"\n", at, end)
        stop = end if nl < 0 else nl + 1
        spans.append((at, stop))
        at = stop
    return spans


def _text_region(seed: Seed, data: bytes) -> int:
    """How far line-level mutations may reach: the whole of a text file, a binary file's
    text header only."""
    return len(data) if seed.family == "text" else min(seed.header_end, len(data))


def line_endings(draw: Draw, seed: Seed, data: bytes) -> Mutant:
    end = _text_region(seed, data)
    head, tail = data[:end], data[end:]
    mode = draw.choice(["crlf", "crlf", "cr", "lf", "mixed"])
    if mode == "crlf":
        head = head.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    elif mode == "cr":
        head = head.replace(b"\r\n", b"\n").replace(b"\n", b"\r")
    elif mode == "lf":
        head = head.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    else:  # one line in CR LF
        spans = _lines(head, len(head))
        if spans:
            a, b = draw.choice(spans)
            line = head[a:b]
            if line.endswith(b"\n") and not line.endswith(b"\r\n"):
                head = head[:a] + line[:-1] + b"\r\n" + head[b:]
    return head + tail, [f"line endings: {mode} in the first {end} bytes"]


def non_utf8(draw: Draw, seed: Seed, data: bytes) -> Mutant:
    at = _position(draw, seed, data, end_ok=True)
    ins = bytes(draw.integer(0x80, 0xFF) for _ in range(draw.integer(1, 3)))
    return data[:at] + ins + data[at:], [f"insert {ins!r} at {at}"]


def header_lines(draw: Draw, seed: Seed, data: bytes) -> Mutant:
    spans = _lines(data, _text_region(seed, data))
    if not spans:
        return data, ["no lines"]
    a, b = draw.choice(spans)
    if draw.integer(0, 1):
        return data[:b] + data[a:b] + data[b:], [f"duplicate line {data[a:b]!r}"]
    return data[:a] + data[b:], [f"drop line {data[a:b]!r}"]


_FLOAT_TOKEN = re.compile(rb"(?<![\w.])-?\d+\.\d+(?:[eE][-+]?\d+)?|(?<![\w.#])-?\d+(?![\w.])")
_NONFINITE_TEXT = ("nan", "NaN", "inf", "-inf", "Infinity", "-nan", "1e999", "-1e400")
_NONFINITE = (float("nan"), float("inf"), float("-inf"))


def nonfinite(draw: Draw, seed: Seed, data: bytes) -> Mutant:
    if seed.family == "text":
        tokens = [m.span() for m in _FLOAT_TOKEN.finditer(data, seed.header_end)]
        if not tokens:
            return data, ["no number"]
        a, b = draw.choice(tokens)
        word = draw.choice(_NONFINITE_TEXT).encode()
        return data[:a] + word + data[b:], [f"number {data[a:b]!r} at {a} -> {word!r}"]
    value = draw.choice(_NONFINITE)
    if seed.family == "pcd_compressed":
        at = seed.header_end
        comp_size, raw_size = struct.unpack_from("<II", data, at)
        raw = bytearray(lzf_decompress(data[at + 8 : at + 8 + comp_size], raw_size) or b"")
        k = 4 * draw.integer(0, 3 * raw_size // 28 - 1)  # one of the x y z floats (7 fields)
        struct.pack_into("<f", raw, k, value)
        comp = lzf_literal(bytes(raw))
        out = data[:at] + struct.pack("<II", len(comp), len(raw)) + comp
        return out, [f"float {k} of the decompressed fields -> {value}"]
    at, fmt = draw.choice(seed.floats)
    buf = bytearray(data)
    struct.pack_into(fmt, buf, at, value)
    return bytes(buf), [f"float at {at} ({fmt}) -> {value}"]


MUTATIONS: dict[str, Callable[[Draw, Seed, bytes], Mutant]] = {
    "truncate": truncate,
    "empty": empty,
    "flip_bytes": flip_bytes,
    "header_count": header_count,
    "line_endings": line_endings,
    "non_utf8": non_utf8,
    "header_lines": header_lines,
    "nonfinite": nonfinite,
}


def applies(name: str, seed: Seed) -> bool:
    """Whether mutation ``name`` means something for ``seed``."""
    if name == "header_count":
        return bool(seed.counts)
    if name in ("line_endings", "header_lines"):
        return seed.family == "text" or seed.header_end > 0
    if name == "nonfinite":
        return seed.family in ("text", "pcd_compressed") or bool(seed.floats)
    return name in MUTATIONS or name == "stacked"


def stacked(draw: Draw, seed: Seed, data: bytes) -> Mutant:
    """Two to four of the mutations above, one after another."""
    names = [n for n in MUTATIONS if n != "empty" and applies(n, seed)]
    what: list[str] = []
    for _ in range(draw.integer(2, 4)):
        name = draw.choice(names)
        if not data and name != "non_utf8":
            continue
        try:
            data, more = MUTATIONS[name](draw, seed, data)
        except (struct.error, ValueError, IndexError):  # an earlier cut removed what it changes
            continue
        what += more
    return data, what


ALL_MUTATIONS = {**MUTATIONS, "stacked": stacked}


def mutate(name: str, draw: Draw, seed: Seed) -> Mutant:
    return ALL_MUTATIONS[name](draw, seed, seed.data)


# --- the oracle: does a mutant hold NaN or an infinity? -------------------------------------


def _nonfinite_window(buf: bytes) -> bool:
    """Whether some 4 or 8 bytes of ``buf``, at any offset and in either byte order, decode as
    a NaN or infinite float32/float64: that needs a 0x7f/0xff byte (sign and exponent) next
    to a byte >= 0x80 (the rest of the exponent). Conservative: any such pair counts."""
    a = np.frombuffer(buf, np.uint8)
    if len(a) < 2:
        return False
    top = (a & 0x7F) == 0x7F
    high = a >= 0x80
    return bool((top[:-1] & high[1:]).any() or (high[:-1] & top[1:]).any())


_TEXT_NONFINITE = re.compile(rb"(?i)nan|inf")
_PCD_DATA = re.compile(rb"(?m)^DATA[ \t]+binary_compressed[^\n]*\n")


def holds_nonfinite(seed: Seed, data: bytes) -> bool:
    """Whether the mutant ``data`` may hold a NaN or infinite value (then a reader may return
    one). Exact for text files (a ``nan``/``inf`` word), conservative for binary ones."""
    if seed.nonfinite:
        return True
    if seed.family == "text":
        return _TEXT_NONFINITE.search(data) is not None
    if seed.family == "las":  # coordinates are integers times the header's scales + offsets
        values = [
            struct.unpack_from("<d", data, at)[0]
            for at in range(131, 179, 8)
            if at + 8 <= len(data)
        ]
        return not np.isfinite(values).all()
    if seed.family == "pcd_compressed":
        m = _PCD_DATA.search(data)
        if m is None or m.end() + 8 > len(data):
            return _nonfinite_window(data)
        comp_size, _ = struct.unpack_from("<II", data, m.end())
        raw = lzf_decompress(data[m.end() + 8 : m.end() + 8 + comp_size], 1 << 24)
        return raw is None or _nonfinite_window(data[: m.end()]) or _nonfinite_window(raw)
    return _nonfinite_window(data)
