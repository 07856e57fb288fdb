"""Fingerprints of the code a student wrote: Python tokens normalized so that the usual disguises
change nothing, then MOSS-style winnowing (copydetect's) of the token k-grams.

Normalization (Python's ``tokenize``): every identifier becomes one token (renaming changes
nothing), every number one token and every string one token (changed literals change nothing),
comments, docstrings and other bare string statements are dropped, and layout is not a token
(reformatting changes nothing). Each top-level function or class is its own unit, and k-grams
never cross units, so reordering functions changes nothing either. Dead code inserted breaks
only the k-grams around it: the copied side's share of its code found in the other stays high.

copydetect hashes k-grams with Python's ``hash()``, which is salted per process; fingerprints
computed on several processes or machines must agree, so the k-gram hashes here are computed
from a stable digest of the tokens, and copydetect's winnowing picks among them.
"""

from __future__ import annotations

import functools
import hashlib
import io
import keyword
import re
import tokenize
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from copydetect.utils import winnow

IDENTIFIER, NUMBER, STRING = "V", "N", "S"
_UNIT_STARTS = {"def", "class", "async", "@"}  # a top-level line starting so opens a function or class unit
_SKIPPED = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
    tokenize.ENDMARKER,
}
_GROUPING = {"(", ")"}  # parentheses: a reformatter adds and removes redundant ones; calls stay visible by their names
_MAGIC_LINE = re.compile(r"^[ \t]*(?:%%?[A-Za-z_]|!(?!=)).*$", re.MULTILINE)  # IPython magics and shell escapes
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: the polynomial of a k-gram's token ids
HASH_BITS = 53  # winnowing compares hashes as float64: keep them exact


@dataclass(frozen=True)
class Piece:
    """One named stretch of a student's code (a notebook cell, a file) and the numbers of the lines
    in it (from 1) that are the template's own, not the student's."""

    name: str
    code: str
    boilerplate: frozenset[int] = frozenset()


class Token(NamedTuple):
    """A normalized token and where it came from: its piece, character span and unit (a tuple: thousands a file)."""

    text: str
    piece: int
    start: int
    end: int
    unit: int


@dataclass
class Fingerprint:
    """What comparing a document needs: its normalized tokens' places and the winnowed k-gram hashes.

    `places[t]` is (piece, start, end) of normalized token t; `hashes[i]` is the fingerprint of the
    k-gram starting at token `starts[i]`.
    """

    places: np.ndarray
    hashes: np.ndarray
    starts: np.ndarray
    k: int
    unique: frozenset[int] = field(init=False)

    def __post_init__(self) -> None:
        self.unique = frozenset(self.hashes.tolist())

    @property
    def size(self) -> int:
        """The number of normalized tokens (the student's code, boilerplate left out)."""
        return len(self.places)

    def positions(self, hashes: set[int] | frozenset[int]) -> np.ndarray:
        """The token indexes where the k-grams of the given fingerprints start (every occurrence)."""
        if not hashes:
            return np.array([], dtype=np.int64)
        keep = np.isin(self.hashes, np.fromiter(hashes, dtype=np.uint64, count=len(hashes)))
        return self.starts[keep].astype(np.int64)


def line_starts(code: str) -> list[int]:
    """Where each line starts, lines ending at line feeds only, as tokenize counts them (str.splitlines also
    splits at form feeds and other separators a student may put in a string); one more entry: the end."""
    return [0, *(m.end() for m in re.finditer("\n", code)), len(code) + 1]


def _raw_tokens(code: str) -> Iterator[tokenize.TokenInfo]:
    """Python's tokens of the code, magics blanked; a cell that stops tokenizing gives what came before."""
    blanked = _MAGIC_LINE.sub(lambda m: " " * len(m.group()), code)
    try:
        yield from tokenize.generate_tokens(io.StringIO(blanked).readline)
    except (tokenize.TokenError, SyntaxError):
        return


def normalized(pieces: Sequence[Piece]) -> list[Token]:
    """The normalized tokens of every piece, in order, boilerplate lines left out (see the module docstring)."""
    out: list[Token] = []
    unit = -1
    for number, piece in enumerate(pieces):
        offsets = line_starts(piece.code)
        depth, script, decorated = 0, False, False  # script: the unit holds top-level statements, not a definition
        line: list[Token] = []  # the current logical line's tokens
        first = True  # the next significant token starts a logical line
        for tok in _raw_tokens(piece.code):
            if tok.type == tokenize.INDENT:
                depth += 1
            elif tok.type == tokenize.DEDENT:
                depth -= 1
            if tok.type == tokenize.NEWLINE:
                if not all(t.text == STRING for t in line):  # a bare string statement: a docstring, a comment
                    out += line
                line, first = [], True
                continue
            if _ignored(tok):
                continue
            if first and depth == 0:
                opens = tok.string in _UNIT_STARTS
                if opens and not decorated or not opens and not script:
                    unit += 1
                script, decorated = not opens, tok.string == "@"
            first = False
            if tok.start[0] in piece.boilerplate:
                continue
            start = offsets[tok.start[0] - 1] + tok.start[1]
            end = offsets[tok.end[0] - 1] + tok.end[1]
            line.append(Token(_kind(tok), number, start, end, unit))
        if any(t.text != STRING for t in line):  # a last line without its NEWLINE (a cell that stopped tokenizing)
            out += line
    return out


def _ignored(tok: tokenize.TokenInfo) -> bool:
    """Layout, comments, parentheses and stray whitespace: never tokens of the comparison."""
    return tok.type in _SKIPPED or tok.string in _GROUPING or not tok.string.strip()


def _kind(tok: tokenize.TokenInfo) -> str:
    if tok.type == tokenize.NAME:
        return tok.string if keyword.iskeyword(tok.string) else IDENTIFIER
    if tok.type == tokenize.NUMBER:
        return NUMBER
    if tok.type == tokenize.STRING:
        return STRING
    return tok.string


@functools.lru_cache(maxsize=4096)
def token_id(text: str) -> int:
    """A stable 64-bit id of a normalized token (the same on every process and machine)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: k-gram hashes spread evenly, as winnowing's minimum needs."""
    with np.errstate(over="ignore"):
        z = values.copy()
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z >> np.uint64(64 - HASH_BITS)


def kgram_hashes(ids: np.ndarray, k: int) -> np.ndarray:
    """The stable hash of every k-gram of a sequence of token ids (none when it is shorter than k)."""
    count = len(ids) - k + 1
    if count <= 0:
        return np.array([], dtype=np.uint64)
    total = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            total = total * _MULTIPLIER + ids[j : j + count]
    return _mix(total)


def fingerprint(pieces: Sequence[Piece], k: int, window: int, ignored: frozenset[int] = frozenset()) -> Fingerprint:
    """The winnowed fingerprints of the pieces, unit by unit, without the `ignored` ones (the template's)."""
    tokens = normalized(pieces)
    places = np.array([(t.piece, t.start, t.end) for t in tokens], dtype=np.int64).reshape(-1, 3)
    ids = np.fromiter((token_id(t.text) for t in tokens), dtype=np.uint64, count=len(tokens))
    units = np.array([t.unit for t in tokens], dtype=np.int64)
    bounds = np.flatnonzero(np.diff(units)) + 1
    hashes, starts = [], []
    for first, last in zip([0, *bounds.tolist()], [*bounds.tolist(), len(tokens)], strict=True):
        unit_hashes = kgram_hashes(ids[first:last], k)
        if len(unit_hashes) == 0:
            continue
        picked, where = winnow(unit_hashes, window_size=window, remove_duplicates=False)
        hashes.append(picked)
        starts.append(where + first)
    all_hashes = np.concatenate(hashes) if hashes else np.array([], dtype=np.uint64)
    all_starts = np.concatenate(starts) if starts else np.array([], dtype=np.int64)
    if ignored and len(all_hashes):
        keep = ~np.isin(all_hashes, np.fromiter(ignored, dtype=np.uint64, count=len(ignored)))
        all_hashes, all_starts = all_hashes[keep], all_starts[keep]
    return Fingerprint(places, all_hashes.astype(np.uint64), all_starts.astype(np.int64), k)
