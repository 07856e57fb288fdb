"""Which documents share code: an inverted index from fingerprint to documents finds the candidate
pairs (documents sharing rare fingerprints), and only those are scored; never all pairs.

A pair's similarity in each direction is the share of one side's fingerprints found in the other
(its denominator at least ``min_fingerprints``, so that a few lines cannot score high); its score is
the larger of the two, so a copy padded with dead code still scores high through the original's
side. Coverage is the share of one side's normalized tokens inside the regions the two share.
Fingerprints found in more than ``common_share`` of the documents (at least ``min_common``) are
what everyone writes for this assignment, and ignored, as MOSS does.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from copydetect.utils import get_copied_slices

from grader.similarity.fingerprint import Fingerprint, Piece

CLASS = "class"
MASTER = "master"
ARCHIVE = "archive"
KNOWN = "known"
CORPORA = {
    CLASS: "this class",
    MASTER: "the master solution (a match suggests a leaked solution)",
    ARCHIVE: "the archive of past offerings",
    KNOWN: "the known public solutions",
}


@dataclass(frozen=True)
class Settings:
    """How documents are fingerprinted and compared; the thresholds are settings, not verdicts."""

    k: int = 10  # tokens per k-gram (parentheses are not tokens): shorter shared runs are noise
    window: int = 4  # winnowing window: every shared run of k + window - 1 tokens is found
    threshold: float = 0.4  # pairs scoring at least this are flagged, connected into groups and shown side by side
    min_score: float = 0.15  # pairs scoring less are not listed at all
    min_fingerprints: int = 40  # a document with fewer fingerprints counts as having this many
    common_share: float = 0.1
    min_common: int = 10
    max_pages: int = 500  # side-by-side pages written, highest scores first


@dataclass
class Document:
    """One submission or reference solution: where it comes from, its code and its fingerprints."""

    key: str
    corpus: str
    label: str
    pieces: list[Piece] = field(default_factory=list)
    fingerprint: Fingerprint | None = None
    error: str | None = None


@dataclass(frozen=True)
class Side:
    """One side of a pair: the share of its fingerprints found in the other, the share of its code
    covered by the shared regions, and those regions as (piece, start, end) character spans."""

    similarity: float
    coverage: float
    regions: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class Pair:
    """Two documents (a is always a class submission) and how much code they share."""

    a: int
    b: int
    shared: int
    score: float
    side_a: Side
    side_b: Side


@dataclass
class Result:
    """Every listed pair, best first, and the groups of three or more connected submissions."""

    documents: list[Document]
    pairs: list[Pair]
    groups: list[list[int]]
    settings: Settings
    ignored_common: int


def common_fingerprints(documents: Sequence[Document], settings: Settings) -> set[int]:
    """The fingerprints found in more documents than the common limit: what everyone writes."""
    df = Counter(h for d in documents if d.fingerprint is not None for h in d.fingerprint.unique)
    limit = max(settings.min_common, settings.common_share * len(documents))
    return {h for h, count in df.items() if count > limit}


def candidates(kept: Sequence[frozenset[int]], is_class: Sequence[bool]) -> Counter[tuple[int, int]]:
    """The number of fingerprints each pair of documents shares, for pairs sharing any, found through
    an inverted index (fingerprint -> documents); pairs of two reference documents are left out."""
    postings: defaultdict[int, list[int]] = defaultdict(list)
    for index, hashes in enumerate(kept):
        for h in hashes:
            postings[h].append(index)
    shared: Counter[tuple[int, int]] = Counter()
    for holders in postings.values():
        if len(holders) > 1:
            shared.update((a, b) for a, b in itertools.combinations(holders, 2) if is_class[a] or is_class[b])
    return shared


def _side(fp: Fingerprint, shared: frozenset[int], similarity: float) -> Side:
    slices = get_copied_slices(fp.positions(shared), fp.k)
    covered = np.zeros(fp.size, dtype=bool)
    for start, end in zip(slices[0].astype(int), slices[1].astype(int), strict=True):
        covered[start:end] = True
    return Side(similarity, float(covered.mean()) if fp.size else 0.0, regions(fp, covered))


def regions(fp: Fingerprint, covered: np.ndarray) -> tuple[tuple[int, int, int], ...]:
    """The character spans (piece, start, end) of runs of covered tokens, a run cut where its piece changes."""
    spans: list[tuple[int, int, int]] = []
    for t in np.flatnonzero(covered):
        piece, start, end = (int(v) for v in fp.places[t])
        if spans and covered[t - 1] and spans[-1][0] == piece:
            spans[-1] = (piece, spans[-1][1], end)
        else:
            spans.append((piece, start, end))
    return tuple(spans)


def compare(documents: Sequence[Document], settings: Settings) -> Result:
    """Score the candidate pairs, list those scoring at least min_score (best first) and group the class."""
    common = common_fingerprints(documents, settings)
    kept = [d.fingerprint.unique - common if d.fingerprint is not None else frozenset() for d in documents]
    is_class = [d.corpus == CLASS for d in documents]
    pairs = []
    for (i, j), count in candidates(kept, is_class).items():
        a, b = (i, j) if is_class[i] else (j, i)
        sim_a = count / max(len(kept[a]), settings.min_fingerprints)
        sim_b = count / max(len(kept[b]), settings.min_fingerprints)
        score = max(sim_a, sim_b)
        if score < settings.min_score:
            continue
        shared = kept[a] & kept[b]
        fa, fb = documents[a].fingerprint, documents[b].fingerprint
        assert fa is not None and fb is not None  # they share fingerprints
        pairs.append(Pair(a, b, count, score, _side(fa, shared, sim_a), _side(fb, shared, sim_b)))
    pairs.sort(
        key=lambda p: (-p.score, -min(p.side_a.similarity, p.side_b.similarity), documents[p.a].key, documents[p.b].key)
    )
    return Result(list(documents), pairs, groups(documents, pairs, settings.threshold), settings, len(common))


def groups(documents: Sequence[Document], pairs: Sequence[Pair], threshold: float) -> list[list[int]]:
    """Connected components of three or more class submissions, joined by pairs scoring at least threshold."""
    parent = list(range(len(documents)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for p in pairs:
        if p.score >= threshold and documents[p.b].corpus == CLASS:
            parent[root(p.a)] = root(p.b)
    members: defaultdict[int, list[int]] = defaultdict(list)
    for i, d in enumerate(documents):
        if d.corpus == CLASS:
            members[root(i)].append(i)
    found = [sorted(m, key=lambda i: documents[i].key) for m in members.values() if len(m) >= 3]
    return sorted(found, key=lambda m: (-len(m), documents[m[0]].key))
