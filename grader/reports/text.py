"""The terminal summary: a table per problem, then every failed check with its cause."""

from __future__ import annotations

import re
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grader.reports import sanitize
from grader.reports.views import ROOT_CAUSES, failed_tests, grader_only, root_causes, tamper_notes

SAME_CAUSE = "the same as above: cell {cell} failed (see the top of this report)"


def isolation_label(execution: dict[str, Any] | None) -> str:
    """'bwrap + landlock + seccomp + rlimits' from an execution record."""
    if not execution:
        return "none (not executed)"
    iso = execution.get("isolation", {})
    layers = iso.get("layers", {})
    names = [iso.get("level", "process")] + [
        f"{name} ({on})" if isinstance(on, str) else name for name, on in layers.items() if on
    ]
    return " + ".join(names)


# A line of output that starts with "::" (after colors and spaces) is a GitHub Actions workflow command (::error,
# ::add-mask::, ...) when `jitgrade check` runs in CI. Student text may put one at the start of a line, directly or
# where the terminal's width folds a long line; a zero-width space between the colons (invisible) defuses it.
_COMMAND = re.compile(r"^((?:\x1b\[[0-9;]*m|\s)*):(?=:)", re.MULTILINE)


def render(report: dict[str, Any], stream: TextIO | None = None, width: int | None = None) -> None:
    """Print the report for a human at a terminal (colors only when the stream is a terminal); every
    string from the report is sanitized and markup-escaped, so no student text becomes an escape sequence,
    and no printed line a CI workflow command."""
    console = Console(file=stream, width=width, highlight=False, soft_wrap=False)
    with console.capture() as captured:
        _print(sanitize.report(report), console)
    console.file.write(_COMMAND.sub("\\1:\u200b", captured.get()))


def _print(report: dict[str, Any], console: Console) -> None:
    prov = report["provenance"]
    console.print(
        f"[bold]jitgrade[/] · {escape(prov['assignment'])} {escape(prov['assignment_version'])} · "
        f"{escape(prov['notebook'])}"
    )
    if report.get("error"):
        console.print(f"[bold red]Not graded:[/] {escape(report['error'])}")
        return
    color = "green" if report["score"] >= report["max_score"] - 1e-9 else "yellow"
    console.print(f"[bold {color}]Score {report['score']:g} / {report['max_score']:g}[/]")
    if prov.get("scoring"):
        console.print(f"[dim]{escape(str(prov['scoring'].get('rule', '')))}[/]")
    causes = root_causes(report)
    if causes:
        console.print(f"\n[bold]{ROOT_CAUSES}[/]")
    for cause in causes:
        console.print(f"[red]✗[/] {escape(cause)}")
    if causes:
        console.print()
    table = Table(show_edge=False, header_style="bold")
    table.add_column("Problem")
    table.add_column("Points", justify="right")
    table.add_column("Checks passed", justify="right")
    for p in report["problems"]:
        mark = "[green]✓[/]" if p["score"] >= p["max_score"] - 1e-9 else "[red]✗[/]"
        table.add_row(f"{mark} {p['name']}", f"{p['score']:g} / {p['max_score']:g}", f"{p['passed']} / {p['checks']}")
    console.print(table)
    failed = failed_tests(report)
    shown = [t for t in failed if t["visibility"] != "hidden" or t.get("diagnosis")]
    hidden = [t for t in failed if t not in shown]
    if failed:
        console.print("\n[bold]What to fix[/]")
    said: set[str] = set()
    for t in shown:
        console.print(f"[red]✗[/] [bold]{escape(t['name'])}[/] ({t['score']:g}/{t['max_score']:g} points)")
        message = t["message"] or t["output"]
        if t.get("cause") is not None and message in said:
            message = SAME_CAUSE.format(cell=t["cause"])
        said.add(message)
        console.print(f"    {escape(message)}")
        if t.get("diagnosis"):
            console.print(f"    [cyan]Likely cause:[/] {escape(t['diagnosis'])}")
    if hidden:
        names = ", ".join(f"{t['problem']}.{t['check']}" for t in hidden)
        console.print(f"[red]✗[/] also failed on hidden inputs (details for instructors only): {escape(names)}")
    elsewhere = grader_only(report["tests"])
    if elsewhere:
        console.print(f"[yellow]·[/] {escape(elsewhere)}")
    ex = report.get("execution")
    if ex:
        parts = [f"{ex['cells_run']} cells run", f"{ex['cell_errors']} with errors"]
        if ex["timeouts"]:
            parts.append(f"timeouts in cells {ex['timeouts']}")
        if ex["crashes"]:
            parts.append(f"crashes in cells {ex['crashes']}")
        files = (report.get("tamper") or {}).get("unit") == "file"
        label = "Files (run as a loader cell, then one cell per file)" if files else "Notebook"
        console.print(f"\n{label}: {', '.join(parts)} · isolation: {isolation_label(ex)}")
        if ex["import_attempts"]:
            console.print(f"[yellow]Blocked imports:[/] {escape(', '.join(ex['import_attempts']))}")
        notes, warning = tamper_notes(report)
        for note in notes:
            console.print(f"[yellow]![/] {escape(note)}" if warning else f"Note: {escape(note)}")
        for event in ex["events"]:
            console.print(f"[yellow]![/] {escape(event)}")
