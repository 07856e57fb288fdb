"""The similarity report: disguised copies are found and ranked above independent work, the template is
never evidence, the reference corpora are named, and the report's files are safe to open.

The class is built from five independently written solutions of the mlp assignment (loops, vectorized,
helper functions, classes, functional; tests/data/similarity/solutions) and, for each, one copy per
disguise (renamed, reformatted, commented, reordered, literals changed, dead code inserted) and one
with all of them combined (tests/data/similarity/disguise.py).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from grader import cli
from grader.assignment import load
from grader.reports import html
from grader.similarity import OUTPUTS, compare, extract, report, run
from grader.similarity.compare import Settings
from grader.similarity.fingerprint import Piece, fingerprint
from grader.submissions import Submission

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "similarity"
sys.path.insert(0, str(DATA))
import disguise  # noqa: E402 - test data beside the solutions

TEMPLATE = ROOT / "student_template" / "mlp.ipynb"
SOLUTIONS = sorted((DATA / "solutions").glob("*.py"))
STUB_ONLY = "stub"  # the template with sigmoid_grad's one line written
LEAKER = "leaker"  # the master solution's code, renamed and reformatted
ATTACK = "</pre><script>alert(1)</script>\u202e\x1b[31m"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def master_code() -> str:
    """The master's solution cells, their region markers dropped (what a leaked copy would hold)."""
    master = json.loads(load("mlp").master.read_text())
    cells = ["".join(c["source"]) for c in master["cells"] if "### BEGIN SOLUTION" in "".join(c["source"])]
    return "\n\n".join("\n".join(line for line in cell.splitlines() if "### " not in line) + "\n" for cell in cells)


def write(folder: Path, name: str, nb: dict[str, Any]) -> Path:
    path = folder / f"{name}.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def klass(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The class folder: every solution, every disguised copy, the template plus one line, a leaked master."""
    folder = tmp_path_factory.mktemp("class")
    for solution in SOLUTIONS:
        code = solution.read_text()
        write(folder, f"{solution.stem}-original", disguise.notebook(code, TEMPLATE))
        for name, change in disguise.DISGUISES.items():
            write(folder, f"{solution.stem}-{name}", disguise.notebook(change(code), TEMPLATE))
    write(folder, STUB_ONLY, disguise.stub_notebook(TEMPLATE, "sigmoid_grad", "return s * (1 - s)"))
    write(folder, LEAKER, disguise.notebook(disguise.reformat(disguise.rename(master_code(), 7)), TEMPLATE))
    return folder


def submissions(folder: Path) -> list[Submission]:
    return [Submission(p.stem, p) for p in sorted(folder.glob("*.ipynb"))]


@pytest.fixture(scope="module")
def result(klass: Path) -> compare.Result:
    return run.run(load("mlp"), submissions(klass), Settings(min_score=0.0))


def family(label: str) -> str:
    return label.rsplit("-", 1)[0]


def score(result: compare.Result, a: str, b: str) -> float:
    """The pair's score (0 when the index found no fingerprint in common)."""
    for p in result.pairs:
        if {result.documents[p.a].label, result.documents[p.b].label} == {a, b}:
            return p.score
    return 0.0


def class_labels(result: compare.Result) -> list[str]:
    return [d.label for d in result.documents if d.corpus == compare.CLASS and d.label not in (STUB_ONLY, LEAKER)]


def test_every_copy_pair_ranks_above_every_pair_of_independent_solutions(result):
    copies, independent = [], []
    for a, b in itertools.combinations(class_labels(result), 2):
        (copies if family(a) == family(b) else independent).append((score(result, a, b), a, b))
    assert len(copies) == len(SOLUTIONS) * 28 and len(independent) > 500
    weakest, strongest = min(copies), max(independent)
    assert weakest[0] > strongest[0], f"copy pair {weakest} ranks below independent pair {strongest}"


@pytest.mark.parametrize("name", ["original", *disguise.DISGUISES])
def test_each_disguise_alone_and_combined_is_flagged_against_its_original(result, name):
    for solution in SOLUTIONS:
        label = f"{solution.stem}-{name}"
        partners = [f"{solution.stem}-{other}" for other in ["original", *disguise.DISGUISES] if other != name]
        found = min(score(result, label, partner) for partner in partners)
        assert found >= result.settings.threshold, (label, found)


def test_renaming_reformatting_comments_literals_and_reordering_leave_the_fingerprints_unchanged():
    code = (DATA / "solutions" / "helpers.py").read_text()
    same = disguise.reorder(disguise.comments(disguise.literals(disguise.rename(code, 3))), 3)
    settings = Settings()

    def prints(text: str) -> frozenset[int]:
        return fingerprint([Piece("cell", text)], settings.k, settings.window).unique

    assert prints(same) == prints(code)
    assert prints(disguise.dead_code(code)) != prints(code)  # dead code does change them: coverage finds it


def test_token_places_stay_on_their_text_after_form_feeds_and_line_separators_in_strings():
    from grader.similarity.fingerprint import normalized

    code = "def f(x):\n    s = 'a\x0cb\u2028c'\n    return np.sum(x * 2, axis=0) + len(s)\n"
    texts = [code[t.start : t.end] for t in normalized([Piece("cell", code)])]
    assert texts[-6:] == ["axis", "=", "0", "+", "len", "s"]


def test_the_template_plus_a_few_lines_scores_near_zero_against_everyone(result):
    scores = [score(result, STUB_ONLY, d.label) for d in result.documents if d.label != STUB_ONLY]
    assert max(scores) < 0.05


def test_the_unchanged_template_is_no_code_of_the_student():
    template = extract.template_of(load("mlp"))
    assert extract.pieces(TEMPLATE, load("mlp")) == []
    assert extract.template_pieces(template)  # while the template itself has code


def test_the_stub_lines_of_a_solution_cell_are_boilerplate():
    nb = disguise.stub_notebook(TEMPLATE, "sigmoid_grad", "return s * (1 - s)")
    from grader import notebook

    pieces = extract.notebook_pieces(notebook.loads(json.dumps(nb).encode(), "x.ipynb"),
                                     extract.template_of(load("mlp")))
    [piece] = pieces
    lines = piece.code.splitlines()
    mine = [n for n in range(1, len(lines) + 1) if n not in piece.boilerplate and lines[n - 1].strip()]
    assert [lines[n - 1].strip() for n in mine] == ["return s * (1 - s)"]


def test_a_copy_of_the_master_is_flagged_as_matching_the_master(result):
    pairs = [p for p in result.pairs if result.documents[p.a].label == LEAKER]
    best = pairs[0]
    assert result.documents[best.b].corpus == compare.MASTER
    assert best.score >= result.settings.threshold
    assert all(score(result, d.label, "master solution of mlp") < result.settings.threshold
               for d in result.documents if d.corpus == compare.CLASS and d.label != LEAKER)


def test_the_copies_of_each_solution_form_one_group(result):
    groups = [sorted({family(result.documents[i].label) for i in g}) for g in result.groups]
    assert sorted(groups) == sorted([[s.stem] for s in SOLUTIONS])
    assert all(len(g) == 8 for g in result.groups)


def test_candidate_pairs_come_from_the_index_not_from_every_pair(result):
    documents = result.documents
    kept = [d.fingerprint.unique if d.fingerprint else frozenset() for d in documents]
    found = compare.candidates(kept, [d.corpus == compare.CLASS for d in documents])
    assert all(kept[a] & kept[b] for a, b in found)
    assert len(found) < len(documents) * (len(documents) - 1) / 2


def test_archive_and_known_solutions_are_compared_and_named(klass, tmp_path):
    archive, known = tmp_path / "archive" / "2024", tmp_path / "known"
    archive.mkdir(parents=True)
    known.mkdir()
    shutil.copy(klass / "oop-renamed.ipynb", archive / "zoe.ipynb")
    (known / "github-gist.py").write_text("import numpy as np\n\n" + (DATA / "solutions" / "loops.py").read_text())
    class_only = [s for s in submissions(klass) if s.student in ("oop-original", "loops-combined", "helpers-original")]
    found = run.run(load("mlp"), class_only, Settings(), archive=archive.parent, known=known)
    matches = {(found.documents[p.a].label, found.documents[p.b].corpus, found.documents[p.b].label)
               for p in found.pairs if p.score >= found.settings.threshold}
    assert matches == {("oop-original", compare.ARCHIVE, "2024/zoe.ipynb"),
                       ("loops-combined", compare.KNOWN, "github-gist.py")}


def test_an_unreadable_submission_is_reported_and_the_others_compared(klass, tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    chosen = [Submission("broken", broken), *[s for s in submissions(klass) if s.student.startswith("oop-")]]
    found = run.run(load("mlp"), chosen, Settings())
    [error] = [d for d in found.documents if d.error]
    assert error.label == "broken" and "invalid JSON" in error.error
    assert len(found.groups) == 1


def test_the_cli_batch_files_name_every_similarity_output():
    assert set(OUTPUTS) <= set(cli.BATCH_FILES)


# --------------------------------------------------------------------------- the command and its files


@pytest.fixture(scope="module")
def hostile_class(klass: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two copies whose code and file names carry markup, terminal escapes and a spreadsheet formula."""
    folder = tmp_path_factory.mktemp("hostile")
    code = (DATA / "solutions" / "vectorized.py").read_text().replace(
        "def sigmoid_grad(s):\n", f"def sigmoid_grad(s):\n    # {ATTACK}\n    note = '{ATTACK}'\n")
    write(folder, "=HYPERLINK(1)", disguise.notebook(code, TEMPLATE))
    write(folder, "copy", disguise.notebook(disguise.rename(code, 5), TEMPLATE))
    write(folder, "other", disguise.notebook((DATA / "solutions" / "loops.py").read_text(), TEMPLATE))
    return folder


@pytest.fixture(scope="module")
def cli_out(hostile_class: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out")
    assert cli.main(["similarity", str(hostile_class), "-a", "mlp", "--out", str(out), "--threshold", "0.5"]) == 0
    return out


def test_the_command_writes_the_csv_the_index_and_a_page_per_flagged_pair(cli_out):
    rows = list(csv.DictReader(io.StringIO((cli_out / report.CSV).read_text())))
    assert rows[0]["student"] in ("copy", "'=HYPERLINK(1)") and rows[0]["other"] in ("copy", "'=HYPERLINK(1)")
    assert rows[0]["flagged"] == "yes" and float(rows[0]["score"]) > 0.9
    assert (cli_out / rows[0]["page"]).is_file()
    assert not any(r["student"].startswith("=") or r["other"].startswith("=") for r in rows)
    index = (cli_out / report.INDEX).read_text()
    assert "evidence for a human to review, not a verdict" in index
    assert f'href="{rows[0]["page"]}"' in index


def test_a_rerun_leaves_no_page_of_an_earlier_run(hostile_class, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["similarity", str(hostile_class), "-a", "mlp", "--out", str(out), "--threshold", "0.05"]) == 0
    before = sorted(p.name for p in (out / "similarity").iterdir())
    assert cli.main(["similarity", str(hostile_class), "-a", "mlp", "--out", str(out), "--threshold", "0.9"]) == 0
    after = sorted(p.name for p in (out / "similarity").iterdir())
    assert len(before) > len(after) == 1


def test_the_index_lists_the_best_pairs_and_the_csv_all_of_them(result, monkeypatch):
    monkeypatch.setattr(report, "MAX_LISTED", 5)
    view = report.index_view(result, "mlp")
    rows = list(csv.DictReader(io.StringIO(report.render_csv(result))))
    assert [p["rank"] for p in view["pairs"]] == [1, 2, 3, 4, 5] and view["listed"] == len(rows) == len(result.pairs)
    assert "The 5 most similar of" in html.similarity_index(view)


def test_student_code_on_the_pages_is_escaped(cli_out):
    page = (cli_out / report.page_name(1)).read_text()
    assert "<script>" not in page and "\x1b" not in page and "\u202e" not in page
    assert str(escape("</pre><script>alert(1)</script>")) in page
    assert "\\u202e\\x1b[31m" in page  # made visible, not interpreted
    assert page.count("<mark>") > 3


@pytest.mark.parametrize(("extra", "message"), [
    (["similarity", "--threshold", "40"], "--threshold must be a share between 0 and 1"),
    (["similarity", "--known", "no-such-folder"], "no-such-folder: no such folder (expected a folder of known"),
    (["grade", "--archive", "."], "add --similarity, or leave them out"),
    (["grade", "--similarity", "--known", "grader/reports/templates"], "no notebooks (.ipynb) or Python files"),
    (["grade", "--similarity", "--threshold", "0"], "--threshold must be a share between 0 and 1"),
])
def test_wrong_similarity_options_are_refused_before_any_work(hostile_class, tmp_path, capsys, extra, message):
    command, *options = extra
    options = [str(ROOT / o) if o.startswith("grader/") else o for o in options]
    code = cli.main([command, str(hostile_class), "-a", "mlp", "--out", str(tmp_path / "out"), *options])
    assert code == cli.EXIT_UNGRADABLE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing graded, nothing written


def test_the_command_on_two_processes_finds_the_same_pairs(hostile_class, cli_out, tmp_path):
    assert cli.main(["similarity", str(hostile_class), "-a", "mlp", "--out", str(tmp_path), "--threshold", "0.5",
                     "--jobs", "2"]) == 0
    assert (tmp_path / report.CSV).read_text() == (cli_out / report.CSV).read_text()


@pytest.mark.slow
def test_the_command_on_a_dask_cluster_finds_the_same_pairs(hostile_class, cli_out, tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert cli.main(["similarity", str(hostile_class), "-a", "mlp", "--out", str(tmp_path), "--threshold", "0.5",
                         "--scheduler", cluster.scheduler_address]) == 0
    assert (tmp_path / report.CSV).read_text() == (cli_out / report.CSV).read_text()


@pytest.mark.slow
def test_grade_with_similarity_links_the_report_from_the_summary(hostile_class, tmp_path):
    out = tmp_path / "out"
    code = cli.main(["grade", str(hostile_class), "-a", "mlp", "--out", str(out), "--similarity", "--threshold", "0.5",
                     "--cell-timeout", "5", "--call-timeout", "3", "--no-feedback"])
    assert code == 0
    assert 'href="similarity.html"' in (out / "summary.html").read_text()
    assert (out / report.INDEX).is_file() and (out / report.CSV).is_file()


@pytest.mark.browser
def test_the_pages_render_in_headless_chromium(cli_out):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("no chromium executable (looked for `chromium` on PATH and /usr/bin/chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto((cli_out / report.INDEX).as_uri())
            assert "not a verdict" in page.inner_text("body")
            assert page.locator("table.pairs tbody tr").count() >= 2
            page.click("table.pairs a >> nth=0")
            page.wait_for_url(f"**/{report.page_name(1)}", timeout=10_000)
            assert page.locator("pre.code mark").count() > 3
            sides = page.evaluate("Array.from(document.querySelectorAll('.side'), s => s.getBoundingClientRect().x)")
            assert len(sides) == 2 and sides[0] < sides[1]  # side by side
            assert ATTACK[:6] in page.inner_text("body") and not dialogs
        finally:
            browser.close()


def test_a_py_assignment_compares_the_files_students_changed(tmp_path):
    assignment = load("cs224n-a1")
    master = assignment.master
    klass = tmp_path / "class"
    for student in ("ada", "ben"):
        shutil.copytree(ROOT / "assignments" / "cs224n-a1" / "examples" / student, klass / student)
    (klass / "leak").mkdir()
    for file in master.glob("*.py"):
        (klass / "leak" / file.name).write_text(disguise.reformat(file.read_text()))
    (klass / "starter").mkdir()
    for file, text in extract.template_of(assignment).items():
        (klass / "starter" / file).write_text(text)
    assert extract.pieces(klass / "starter", assignment) == []
    assert [p.name for p in extract.pieces(klass / "ada", assignment)] == sorted(p.name for p in master.glob("*.py"))
    out = tmp_path / "out"
    assert cli.main(["similarity", str(klass), "-a", "cs224n-a1", "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO((out / report.CSV).read_text())))
    leak = [r for r in rows if r["student"] == "leak"]
    assert leak[0]["other_corpus"] == "master" and leak[0]["flagged"] == "yes"
    assert not any("starter" in (r["student"], r["other"]) for r in rows)


@pytest.mark.slow
def test_the_benchmark_finds_every_planted_group_on_a_quick_run(tmp_path):
    import subprocess

    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_similarity.py"), "--quick", "--json",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    notes = json.loads(out.read_text())["notes"]
    assert notes["planted_groups"] == 6 and notes["groups_of_three_or_more"] == 4 and notes["peak_memory_mib"] > 0
