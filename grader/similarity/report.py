"""The similarity report's files: the ranked pairs as CSV, the HTML index with the groups, and one
side-by-side page per flagged pair with the shared regions highlighted. Every student-made string
goes through the sanitizer (in the renderers); a student's code is hostile text.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
from pathlib import Path
from typing import Any

import numpy as np

from grader.reports import files, gradebook, sanitize
from grader.similarity import CSV, INDEX, PAGES
from grader.similarity.compare import CLASS, CORPORA, Document, Pair, Result, Side
from grader.similarity.fingerprint import line_starts

DISCLAIMER = (
    "Similarity is evidence for a human to review, not a verdict. Shared code has innocent causes too: "
    "the same hint from a tutor, a common textbook idiom, a study group allowed by the course's rules. "
    "Read the code side by side before deciding anything."
)
COLUMNS = [
    "rank",
    "student",
    "other",
    "other_corpus",
    "score",
    "similarity_student",
    "similarity_other",
    "coverage_student",
    "coverage_other",
    "shared_fingerprints",
    "group",
    "flagged",
    "page",
]
MAX_LISTED = 2000  # pairs on the index page, best first (the CSV has every listed pair)
PLAIN, BOILERPLATE, SHARED = 0, 1, 2
KINDS = {PLAIN: "plain", BOILERPLATE: "boilerplate", SHARED: "shared"}


PAGE_GLOB = "pair-[0-9][0-9][0-9][0-9]*.html"


def page_name(rank: int) -> str:
    """The side-by-side page of the pair ranked `rank` (from 1), relative to the report's folder."""
    return f"{PAGES}/pair-{rank:04d}.html"


def _pages(result: Result) -> dict[int, str]:
    flagged = [i for i, p in enumerate(result.pairs) if p.score >= result.settings.threshold]
    return {i: page_name(i + 1) for i in flagged[: result.settings.max_pages]}


def _groups_of(result: Result) -> dict[int, int]:
    return {member: number for number, group in enumerate(result.groups, 1) for member in group}


def pair_rows(result: Result) -> list[dict[str, Any]]:
    """Every listed pair, best first, as the index page and the CSV show it."""
    docs = result.documents
    pages = _pages(result)
    group_of = _groups_of(result)
    return [
        {
            "rank": i + 1,
            "a": docs[p.a].label,
            "b": docs[p.b].label,
            "corpus": docs[p.b].corpus,
            "corpus_label": CORPORA[docs[p.b].corpus],
            "score": p.score,
            "a_similarity": p.side_a.similarity,
            "b_similarity": p.side_b.similarity,
            "a_coverage": p.side_a.coverage,
            "b_coverage": p.side_b.coverage,
            "shared": p.shared,
            "flagged": p.score >= result.settings.threshold,
            "page": pages.get(i),
            "group": group_of.get(p.a),
        }
        for i, p in enumerate(result.pairs)
    ]


def index_view(result: Result, title: str) -> dict[str, Any]:
    """What the index page shows: settings, corpora, ranked pairs (the first MAX_LISTED), groups, documents
    not compared."""
    docs = result.documents
    counts = {corpus: sum(d.corpus == corpus for d in docs) for corpus in CORPORA}
    pairs = pair_rows(result)
    groups = []
    for number, members in enumerate(result.groups, 1):
        inside = set(members)
        references = sorted(
            {
                f"{docs[p.b].label} ({docs[p.b].corpus})"
                for p in result.pairs
                if p.a in inside and docs[p.b].corpus != CLASS and p.score >= result.settings.threshold
            }
        )
        groups.append({"number": number, "members": [docs[m].label for m in members], "references": references})
    return {
        "title": title,
        "disclaimer": DISCLAIMER,
        "settings": dataclasses.asdict(result.settings),
        "counts": [{"corpus": c, "label": CORPORA[c], "count": n} for c, n in counts.items() if n],
        "pairs": pairs[:MAX_LISTED],
        "listed": len(pairs),
        "flagged": sum(p["flagged"] for p in pairs),
        "groups": groups,
        "errors": [{"label": d.label, "corpus": d.corpus, "error": d.error} for d in docs if d.error],
        "ignored_common": result.ignored_common,
    }


def segments(document: Document, side: Side) -> list[dict[str, Any]]:
    """Each piece of a document cut into runs of plain, boilerplate (the template's) and shared text."""
    out = []
    for number, piece in enumerate(document.pieces):
        kinds = np.full(len(piece.code), PLAIN, dtype=np.int8)
        starts = line_starts(piece.code)
        for where, start, end in side.regions:
            if where == number:
                kinds[start:end] = SHARED
        for line in piece.boilerplate:  # last: a template line inside a shared region was not compared
            if line < len(starts):
                kinds[starts[line - 1] : starts[line]] = BOILERPLATE
        cuts = [0, *(np.flatnonzero(np.diff(kinds)) + 1).tolist(), len(piece.code)]
        runs = [{"text": piece.code[s:e], "kind": KINDS[int(kinds[s])]} for s, e in itertools.pairwise(cuts) if e > s]
        out.append({"name": piece.name, "segments": runs})
    return out


def pair_view(result: Result, index: int, title: str) -> dict[str, Any]:
    """What a side-by-side page shows: both documents, their shares, the shared regions highlighted."""
    pair: Pair = result.pairs[index]
    docs = result.documents

    def side(document: Document, s: Side) -> dict[str, Any]:
        return {
            "label": document.label,
            "corpus": document.corpus,
            "corpus_label": CORPORA[document.corpus],
            "similarity": s.similarity,
            "coverage": s.coverage,
            "pieces": segments(document, s),
        }

    return {
        "title": title,
        "rank": index + 1,
        "score": pair.score,
        "shared": pair.shared,
        "disclaimer": DISCLAIMER,
        "a": side(docs[pair.a], pair.side_a),
        "b": side(docs[pair.b], pair.side_b),
        "index": f"../{INDEX}",
    }


def render_csv(result: Result) -> str:
    """The ranked pairs as CSV (a spreadsheet cannot be made to run a formula from a student's name)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in pair_rows(result):
        values = [
            row["rank"],
            row["a"],
            row["b"],
            row["corpus"],
            round(row["score"], 4),
            round(row["a_similarity"], 4),
            round(row["b_similarity"], 4),
            round(row["a_coverage"], 4),
            round(row["b_coverage"], 4),
            row["shared"],
            row["group"],
            "yes" if row["flagged"] else "",
            row["page"],
        ]
        writer.writerow([gradebook.cell(sanitize.one_line(v) if isinstance(v, str) else v) for v in values])
    return buffer.getvalue()


def write(result: Result, out: Path, title: str) -> Path:
    """Write the CSV, the index page and the side-by-side pages into `out`; the index page's path."""
    from grader.reports import html

    files.write_atomic(out / CSV, render_csv(result))
    pages = _pages(result)
    for index, page in pages.items():
        files.write_atomic(out / page, html.similarity_pair(pair_view(result, index, title)))
    for stale in set((out / PAGES).glob(PAGE_GLOB)) - {out / page for page in pages.values()}:
        stale.unlink()  # an earlier run's page of a pair this run ranks elsewhere, or not at all
    files.write_atomic(out / INDEX, html.similarity_index(index_view(result, title)))
    return out / INDEX
