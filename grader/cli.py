"""The ``jitgrade`` command: a thin layer over the library (check, grade, assign, gradescope, list).

Heavy imports (Numba, the reference, matplotlib) happen only in the subcommands that need
them, after the sandbox zygote has been launched, so that they overlap with its start-up.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_POINTS_LOST, EXIT_UNGRADABLE = 0, 1, 2
SIMILARITY_THRESHOLD = 0.4  # grader.similarity.compare.Settings.threshold (this module imports nothing heavy)
BAD_THRESHOLD = "--threshold must be a share between 0 and 1 (for example 0.4); got {value}"
NEEDS_SIMILARITY = "--archive and --known are corpora of the similarity report: add --similarity, or leave them out"


class UsageError(Exception):
    """Input that cannot be graded at all: printed as one line, exit code 2."""


def _limits_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits (default: the assignment's)")
    group.add_argument("--cell-timeout", type=float, metavar="S", help="seconds per notebook cell")
    group.add_argument("--call-timeout", type=float, metavar="S", help="seconds per call of a student function")
    group.add_argument(
        "--notebook-timeout",
        type=float,
        metavar="S",
        help="seconds for the whole submission: its cells and every call of its functions together",
    )
    group.add_argument("--memory-mb", type=int, metavar="MB", help="memory limit of the student process")
    group.add_argument("--output-kb", type=int, metavar="KB", help="cap on the notebook's captured output")
    group.add_argument(
        "--isolation",
        choices=("auto", "bwrap", "process"),
        default="auto",
        help="auto: bubblewrap when it works here, else process-level confinement",
    )
    parser.add_argument("--seed", type=int, help="seed of the hidden cases (default: fresh, recorded in the report)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="jitgrade", description="Grade neural-network homework notebooks.")
    parser.add_argument("--version", action="version", version=f"jitgrade {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="grade one notebook and explain what to fix (students, CI)")
    check.add_argument("notebook")
    check.add_argument("-a", "--assignment", help="assignment name or folder (default: from the notebook's metadata)")
    check.add_argument("--visible-only", action="store_true", help="skip the hidden cases (every seeded check has one)")
    check.add_argument("--json", metavar="FILE", help="write the canonical JSON report")
    check.add_argument("--html", metavar="FILE", help="write the feedback page")
    check.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    check.add_argument("--gradescope", metavar="FILE", help="write Gradescope's results.json")
    check.add_argument("--annotations", choices=("github",), help="print GitHub Actions ::error lines")
    check.add_argument("-q", "--quiet", action="store_true", help="no terminal summary")
    _limits_arguments(check)

    grade = sub.add_parser("grade", help="grade a class: notebooks, folders, zip exports (instructors)")
    grade.add_argument("submissions", nargs="+")
    grade.add_argument("-a", "--assignment", required=True)
    grade.add_argument("--out", required=True, metavar="DIR", help="folder for reports and the gradebook")
    grade.add_argument("-j", "--jobs", type=int, default=1, help="local grading processes")
    grade.add_argument("--scheduler", metavar="ADDRESS", help="grade on a dask.distributed scheduler")
    grade.add_argument("--force", action="store_true", help="regrade submissions that already have a report")
    grade.add_argument("--no-feedback", action="store_true", help="skip the per-student HTML pages")
    _limits_arguments(grade)

    assign = sub.add_parser("assign", help="make the student notebook (or .py starter files) from a master")
    assign.add_argument("master", help="the master notebook, or an assignment name or folder holding its master")
    assign.add_argument("--out", required=True, metavar="DIR")
    assign.add_argument("--name", help="file name of the student notebook (default: the assignment's template)")
    assign.add_argument(
        "--no-expected",
        action="store_true",
        help="do not record the visible checks' expected values into the assignment folder (selfcheck.npz, what an "
        "install without the reference solution self-checks with; recording grades the master and the examples)",
    )

    bundle = sub.add_parser("gradescope", help="build the Gradescope autograder zip")
    bundle.add_argument("assignment")
    bundle.add_argument("-o", "--output", default="autograder.zip")

    similarity = sub.add_parser(
        "similarity", help="which submissions share code (academic integrity: evidence to review, not a verdict)")
    similarity.add_argument("submissions", nargs="+")
    similarity.add_argument("-a", "--assignment", required=True)
    similarity.add_argument("--out", required=True, metavar="DIR", help="folder for similarity.html and .csv")
    similarity.add_argument("-j", "--jobs", type=int, default=1, help="local fingerprinting processes")
    similarity.add_argument("--scheduler", metavar="ADDRESS", help="fingerprint on a dask.distributed scheduler")
    _similarity_arguments(similarity)
    _similarity_arguments(grade, flag=True)

    sub.add_parser("list", help="list the bundled assignments")
    return parser


def _similarity_arguments(parser: argparse.ArgumentParser, flag: bool = False) -> None:
    group = parser.add_argument_group("similarity report")
    if flag:
        group.add_argument("--similarity", action="store_true",
                           help="also write the similarity report into --out, linked from summary.html")
    group.add_argument("--archive", metavar="DIR", help="past offerings' submissions to compare with")
    group.add_argument("--known", metavar="DIR", help="known public solutions to compare with")
    group.add_argument("--threshold", type=float, default=SIMILARITY_THRESHOLD, metavar="X",
                       help=f"flag and group pairs scoring at least X, 0 to 1 (default {SIMILARITY_THRESHOLD})")


def _version() -> str:
    from grader import __version__

    return __version__


def _limits(assignment: Any, args: argparse.Namespace) -> Any:
    return assignment.limits.override(
        cell_timeout=args.cell_timeout,
        call_timeout=args.call_timeout,
        notebook_timeout=args.notebook_timeout,
        memory_mb=args.memory_mb,
        output_kb=args.output_kb,
    )


def _load_assignment(name: str, from_metadata: bool = False) -> Any:
    from grader.assignment import AssignmentError, declared, load

    try:
        return declared(name) if from_metadata else load(name)
    except AssignmentError as exc:
        raise UsageError(str(exc)) from None


# --------------------------------------------------------------------------- check


def _write_formats(report: dict[str, Any], args: argparse.Namespace) -> None:
    from grader.reports import files, gradescope, junit
    from grader.reports.views import student_view

    if args.json:
        files.write_atomic(args.json, files.dumps_json(report))
    if args.gradescope:
        files.write_atomic(args.gradescope, files.dumps_json(gradescope.results(report)))
    if args.junit:
        files.write_atomic(args.junit, junit.render(student_view(report)))
    if args.html:
        from grader.reports import html

        files.write_atomic(args.html, html.feedback(report))


NOT_RECORDED = (
    "{name}: the visible checks' expected values were not recorded (selfcheck.npz): the reference solution is not "
    "installed here, so students' installs will run only the checks that need no expected value; record them "
    "where it is (`pip install jitgrade ./instructor`)"
)
NOT_RECORDED_BECAUSE = (
    "{name}: the student files are written, but the visible checks' expected values (selfcheck.npz) could not be "
    "recorded: {why}; fix that and run jitgrade assign again (or pass --no-expected)"
)
NO_ASSIGNMENT = "{path}: no assignment given and none in the notebook's metadata; pass -a NAME"
NO_ASSIGNMENT_FILES = "{path}: .py files name no assignment; pass -a NAME (the assignment's name or folder)"


def cmd_check(args: argparse.Namespace) -> int:
    """Grade one notebook (or .py submission); exit 0 with every point, 1 with points lost, 2 when it cannot be
    graded."""
    from grader import notebook as nb
    from grader.sandbox.zygote import Zygote
    from grader.submissions import read_submission

    given = _load_assignment(args.assignment) if args.assignment else None
    try:  # a notebook or .py files, as the assignment accepts and as handed in (submissions.read_submission)
        notebook: Any = read_submission(args.notebook, given) if given else nb.read(args.notebook)
    except nb.NotebookError as exc:
        notebook, problem = None, str(exc)
    name = args.assignment or (notebook.assignment if notebook is not None else None)
    if name is None:
        files = Path(args.notebook).is_dir() or Path(args.notebook).suffix in (".py", ".zip")
        raise UsageError(
            NO_ASSIGNMENT_FILES.format(path=args.notebook)
            if files
            else problem
            if notebook is None
            else NO_ASSIGNMENT.format(path=args.notebook)
        )
    assignment = given or _load_assignment(name, from_metadata=True)
    limits = _limits(assignment, args)
    hidden = [str(Path(p).resolve().parent) for p in (args.json, args.html, args.junit, args.gradescope) if p]
    zygote = Zygote(isolation=args.isolation, hidden_paths=hidden, preload=assignment.preload)
    if notebook is not None:
        zygote.launch()  # overlaps the interpreter start-up with the imports below
    from grader import truth
    from grader.grading import Grader, new_seed
    from grader.scoring import SubmissionResult

    visible_only = args.visible_only or not truth.available()  # hidden cases need the reference (instructors)
    seed = None if visible_only else (args.seed if args.seed is not None else new_seed())
    grader = Grader(assignment, limits, seed, include_hidden=not visible_only, zygote=zygote)
    if notebook is not None:
        grader.start()
    try:
        if notebook is None:
            result = SubmissionResult(
                Path(args.notebook).stem, Path(args.notebook).name, None, assignment, seed, error=problem
            )
        else:
            result = grader.grade(notebook, Path(notebook.name).stem).result
    finally:
        grader.close()
    report = result.to_dict()
    _write_formats(report, args)
    from grader.reports.views import student_view

    if not args.quiet:
        from grader.reports import text

        text.render(student_view(report))
    if args.annotations == "github":  # a CI log is the student's to read: hidden checks keep their details
        from grader.reports import github

        sys.stdout.write(github.render(student_view(report), args.notebook))
    if result.error:
        from grader.reports.sanitize import one_line

        print(f"jitgrade: {one_line(result.error)}", file=sys.stderr)
        return EXIT_UNGRADABLE
    return EXIT_OK if result.score >= result.max_score - 1e-9 else EXIT_POINTS_LOST


# --------------------------------------------------------------------------- grade


RUN_FILE = "jitgrade-run.json"
SIMILARITY_FILES = ("similarity.html", "similarity.csv", "similarity")  # grader.similarity.OUTPUTS; a test ties them
GRADEBOOK = "gradebook.csv"
SUMMARY = "summary.html"
LOCK_FILE = ".jitgrade.lock"
# Everything a batch writes at the top of --out; no student folder may take one of these names
# (write_atomic's temporary files start with a dot, which no folder name does).
BATCH_FILES = (RUN_FILE, GRADEBOOK, SUMMARY, LOCK_FILE, *SIMILARITY_FILES)
NOT_WRITTEN = "the reports of this submission could not be written ({error}); it was not graded: rerun to try again"
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # files.write_atomic's, before their rename


def _safe_name(student: str) -> str:
    cleaned = re.sub(r"[^\w.@-]+", "_", student).strip("._") or "student"
    return cleaned[:100]


def _folders(students: Sequence[str]) -> dict[str, str]:
    """A report folder per student: the safe name, suffixed when two ids clean up to the same one or to
    a batch file's name (compared without case, for case-insensitive file systems); stable for the same inputs."""
    taken = {name.lower() for name in BATCH_FILES}
    folders = {}
    for student in students:
        base = name = _safe_name(student)
        n = 1
        while name.lower() in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name.lower())
        folders[student] = name
    return folders


def _previous_run(out: Path) -> dict[str, Any]:
    try:
        record = json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _run_seed(out: Path, assignment: Any, requested: int | None, limits: Any = None) -> int:
    """The hidden seed of this output folder: given, recorded by an earlier run, or new; recorded
    (with the limits, which also decide whether earlier reports still hold) before grading starts."""
    from grader.grading import new_seed
    from grader.reports.files import write_atomic

    recorded = _previous_run(out).get("hidden_seed")
    seed = requested if requested is not None else (recorded if isinstance(recorded, int) else new_seed())
    record = {"assignment": assignment.name, "assignment_version": assignment.version, "hidden_seed": seed}
    if limits is not None:
        record["limits"] = limits.as_dict()
    write_atomic(out / RUN_FILE, json.dumps(record, indent=2) + "\n")
    return seed


def _up_to_date(report_path: Path, submission: Any, assignment: Any, seed: int) -> dict[str, Any] | None:
    """The existing report when it was made in this report format for the same student from the same notebook,
    assignment version and seed (the same bytes handed in by two students are two reports)."""
    from grader.reports import sanitize
    from grader.scoring import SCHEMA_VERSION

    sha = _sha256(submission, assignment)
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        prov = report["provenance"]
        same = (
            sha is not None
            and prov.get("schema_version") == SCHEMA_VERSION
            and prov.get("notebook_sha256") == sha
            and prov.get("student") == submission.student
            and prov.get("notebook") == sanitize.text(submission.path.name)
            and prov.get("assignment_version") == assignment.version
            and prov.get("hidden_seed") == seed
            and prov.get("assignment") == assignment.name
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return report if same else None


def _sha256(submission: Any, assignment: Any) -> str | None:
    """The submission's sha256 as its report records it (a notebook's bytes; .py files: pyfiles.digest)."""
    import hashlib

    from grader import pyfiles

    if submission.path is None:
        return None
    try:
        if submission.python:
            return pyfiles.read(submission.path, assignment).sha256
        return hashlib.sha256(submission.path.read_bytes()).hexdigest()
    except (OSError, pyfiles.PyFilesError):
        return None


def _lock_output(out: Path) -> Any:
    """Hold a lock on the output folder for this run (released by the kernel, even on SIGKILL)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None
    handle = open(out / LOCK_FILE, "a")  # noqa: SIM115 - held open for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise UsageError(f"another jitgrade grade is writing to {out}; wait for it or use another --out") from None
    return handle


def _remove_temporaries(out: Path) -> int:
    """Delete the temporary files an interrupted run left behind (a kill between write and rename)."""
    removed = 0
    for path in [*out.glob(".*.tmp"), *out.glob("*/.*.tmp")]:
        if _TEMPORARY.match(path.name) and path.is_file():
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def _discover(assignment: Any, inputs: Sequence[str], out: Path) -> list[Any]:
    """The submissions in the inputs (notebooks, .py files, or either, as the assignment accepts), `out` left out."""
    from grader import pyfiles
    from grader.submissions import SubmissionError, discover_for

    try:
        return discover_for(assignment, inputs, [out])
    except (SubmissionError, pyfiles.PyFilesError) as exc:
        raise UsageError(str(exc)) from None


def cmd_grade(args: argparse.Namespace) -> int:
    """Grade every submission into --out; resumable (finished reports are kept) and crash-safe.

    Each report is written, atomically, as soon as its submission is graded: the executed
    notebook and the feedback page first, report.json last (its presence means done). A rerun
    of the same command skips submissions whose report was made from the same notebook bytes,
    assignment version, hidden seed and limits, and grades the rest; --force regrades all.
    """
    from concurrent.futures.process import BrokenProcessPool

    from grader import executors, truth
    from grader.reports import files, gradebook
    from grader.sandbox.zygote import ZygoteError

    if not truth.available():
        raise UsageError(truth.REFERENCE_MISSING.format(command="grade"))
    _check_options(args)
    assignment = _load_assignment(args.assignment)
    out = Path(args.out)
    submissions = _discover(assignment, args.submissions, out)
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock_output(out)
    _remove_temporaries(out)
    limits = _limits(assignment, args)
    previous = _previous_run(out)
    same_limits = previous.get("limits", limits.as_dict()) == limits.as_dict()
    seed = _run_seed(out, assignment, args.seed, limits)
    hidden = [str(out.resolve())] + [str(Path(p).resolve()) for p in args.submissions]
    settings = executors.Settings(
        executors.assignment_reference(assignment.directory),
        limits,
        seed,
        args.isolation,
        tuple(hidden),
        feedback=not args.no_feedback,
    )
    folders = _folders([s.student for s in submissions])  # ids are unique (discover), so are their folders
    batch = {folders[s.student]: s for s in submissions}  # row key (its report folder) -> submission
    reports: dict[str, dict[str, Any]] = {}
    todo = {}
    for key, s in batch.items():
        existing = None
        if not args.force and same_limits and s.path is not None:
            existing = _up_to_date(out / key / "report.json", s, assignment, seed)
        if existing is None:
            todo[key] = s
            continue
        reports[key] = existing
        if settings.feedback and not (out / key / "feedback.html").is_file():
            from grader.reports import html

            files.write_atomic(out / key / "feedback.html", html.feedback(existing))
    note = "" if same_limits else " (the limits changed since the last run in this folder: regrading all)"
    print(
        f"jitgrade: {len(submissions)} submissions, {len(reports)} already graded, {len(todo)} to grade "
        f"(hidden seed {seed}){note}",
        file=sys.stderr,
    )
    run = executors.executor(args.jobs, args.scheduler)
    try:
        with _progress(len(todo)) as advance:
            for output in run(settings, todo):
                try:
                    reports[output.key] = _write_outputs(out / output.key, output)
                except OSError as exc:  # this submission's folder cannot be written: its row says so
                    failed = executors.not_graded(
                        settings,
                        executors.task_of(output.key, batch[output.key]),
                        NOT_WRITTEN.format(error=exc.strerror or exc),
                    )
                    reports[output.key] = json.loads(failed.report)
                advance(batch[output.key].student, reports[output.key])
    except (ZygoteError, BrokenProcessPool) as exc:
        raise UsageError(f"grading stopped: {exc}; the finished reports are kept: rerun to go on") from None
    ordered = [reports[key] for key in batch if key in reports]
    files.write_atomic(out / GRADEBOOK, gradebook.render(assignment, ordered))
    from grader.reports import html

    title = f"{assignment.title} ({assignment.name})"
    files.write_atomic(out / SUMMARY, html.summary(ordered, title, folders))
    if args.similarity:  # after the summary is written: a failing similarity run never costs the class its summary
        index = _similarity_report(assignment, submissions, out, args)[0]
        files.write_atomic(out / SUMMARY, html.summary(ordered, title, folders, similarity=index.name))
    if lock is not None:
        lock.close()
    sys.stdout.write((out / GRADEBOOK).read_text())
    print(
        f"jitgrade: reports in {out}/ (gradebook.csv, summary.html, <student>/report.json, feedback.html)",
        file=sys.stderr,
    )
    return EXIT_OK


def _write_outputs(folder: Path, output: Any) -> dict[str, Any]:
    """Write one submission's files into its folder, report.json last (its presence means "done"); its report."""
    from grader.reports import files

    if output.executed is not None:
        files.write_atomic(folder / "executed.ipynb", output.executed)
    if output.feedback is not None:
        files.write_atomic(folder / "feedback.html", output.feedback)
    files.write_atomic(folder / "report.json", output.report)
    return json.loads(output.report)


class _progress:
    """A progress bar on a terminal; one line per submission otherwise (CI logs)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.bar: Any = None

    def __enter__(self) -> Any:
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("grading"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=self.total)
        return self.advance

    def advance(self, student: str, report: dict[str, Any]) -> None:
        from grader.reports.sanitize import one_line

        self.done += 1
        student = one_line(student)  # a file name must not reach the terminal raw
        score = f"{report['score']:g}/{report['max_score']:g}" if not report.get("error") else "not graded"
        if self.bar is not None:
            from rich.markup import escape

            self.bar.update(self.task, advance=1, description=f"{escape(student)}: {score}")  # no markup either
        else:
            print(f"[{self.done}/{self.total}] {student}: {score}", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


# --------------------------------------------------------------------------- similarity


def _check_options(args: argparse.Namespace) -> None:
    """--jobs and the similarity options, checked before any work starts (not after a class is graded)."""
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if not getattr(args, "similarity", True) and (args.archive or args.known):
        raise UsageError(NEEDS_SIMILARITY)
    if not 0 < args.threshold <= 1:
        raise UsageError(BAD_THRESHOLD.format(value=args.threshold))
    for corpus, folder in (("archive", args.archive), ("known", args.known)):
        if folder:
            from grader.similarity.run import reference_files

            try:
                reference_files(Path(folder), corpus)  # a folder holding something to compare with
            except FileNotFoundError as exc:
                raise UsageError(str(exc)) from None


def _similarity_report(assignment: Any, submissions: Sequence[Any], out: Path, args: argparse.Namespace) -> Any:
    """Compare the submissions with each other and the reference corpora; write the report into `out`;
    (the index page's path, the result)."""
    from grader.assignment import AssignmentError
    from grader.similarity import report, run
    from grader.similarity.compare import Settings

    settings = Settings(threshold=args.threshold, min_score=min(Settings.min_score, args.threshold))
    archive, known = (Path(p) if p else None for p in (args.archive, args.known))
    try:
        result = run.run(assignment, submissions, settings, archive, known, args.jobs, args.scheduler)
    except (FileNotFoundError, AssignmentError) as exc:
        raise UsageError(str(exc)) from None
    return report.write(result, out, f"{assignment.title} ({assignment.name})"), result


def cmd_similarity(args: argparse.Namespace) -> int:
    """Write the similarity report of a class (similarity.html, similarity.csv, side-by-side pages) into --out."""
    from grader.reports.sanitize import one_line

    _check_options(args)
    assignment = _load_assignment(args.assignment)
    out = Path(args.out)
    submissions = _discover(assignment, args.submissions, out)
    out.mkdir(parents=True, exist_ok=True)
    index, result = _similarity_report(assignment, submissions, out, args)
    flagged = [p for p in result.pairs if p.score >= result.settings.threshold]
    for p in flagged:
        a, b = result.documents[p.a], result.documents[p.b]
        print(f"{p.score:6.0%}  {one_line(a.label)}  {one_line(b.label)}  ({b.corpus})")
    print(f"jitgrade: {len(submissions)} submissions, {len(flagged)} pairs at or above {args.threshold:.0%}, "
          f"{len(result.groups)} groups of three or more; report in {index} (evidence to review, not a verdict)",
          file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- assign, gradescope, list


def cmd_assign(args: argparse.Namespace) -> int:
    """Write the student notebook for a master notebook (and its .py starter when the assignment accepts .py
    files too), or the starter files for a master folder of .py files; print each path written."""
    from grader import assign, truth
    from grader.pyfiles import PyFilesError
    from grader.sandbox.zygote import ZygoteError
    from grader.submissions import SubmissionError

    try:
        master = assign.master_of(args.master)
        written = assign.write(master, Path(args.out), args.name)
    except assign.AssignError as exc:
        raise UsageError(str(exc)) from None
    for path in written:
        print(path)
    assignment = assign.assignment_beside(master)
    if assignment is not None and not args.no_expected:
        if truth.available():
            try:
                print(assign.write_expected(assignment))
            except (ZygoteError, SubmissionError, PyFilesError) as exc:
                raise UsageError(NOT_RECORDED_BECAUSE.format(name=assignment.name, why=exc)) from None
        else:
            print(NOT_RECORDED.format(name=assignment.name), file=sys.stderr)
    return EXIT_OK


def cmd_gradescope(args: argparse.Namespace) -> int:
    """Write the Gradescope autograder zip."""
    from grader.pyfiles import PyFilesError
    from grader.reports import files, gradescope

    assignment = _load_assignment(args.assignment)
    try:
        data = gradescope.bundle(assignment)
    except (FileNotFoundError, PyFilesError) as exc:
        raise UsageError(str(exc)) from None
    files.write_atomic(args.output, data)
    print(args.output)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    """Print the bundled assignments."""
    from grader.assignment import available, load

    for name in available():
        a = load(name)
        print(f"{a.name:16s} {a.version:8s} {a.max_score:g} points  {a.title}")
    return EXIT_OK


COMMANDS = {
    "check": cmd_check,
    "grade": cmd_grade,
    "assign": cmd_assign,
    "gradescope": cmd_gradescope,
    "list": cmd_list,
    "similarity": cmd_similarity,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jitgrade`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        from grader.reports.sanitize import one_line

        print(f"jitgrade: {one_line(str(exc))}", file=sys.stderr)  # messages quote file names
        return EXIT_UNGRADABLE
    except KeyboardInterrupt:
        print("jitgrade: interrupted", file=sys.stderr)
        return 130
    finally:
        _before_exit()


def _before_exit() -> None:
    """Let a first run finish filling Numba's cache, then skip the interpreter's final garbage
    collection of the many objects Numba and LLVM create (a third of a second at exit)."""
    import gc

    grading = sys.modules.get("grader.grading")
    if grading is not None:
        grading.finish_warm_up()
    gc.freeze()
