"""pytest plugin: ``pytest --jitgrade NOTEBOOK`` collects one test item per check of the assignment.

The second front end over the same registry as the CLI (as scikit-learn's
parametrize_with_checks is to check_estimator). The notebook is graded once, in the sandbox,
when the first item runs; every item then reports its own check's outcome.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_KEY = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jitgrade", "grade a homework notebook with jitgrade")
    group.addoption("--jitgrade", metavar="NOTEBOOK", help="grade this notebook: one test per check")
    group.addoption("--jitgrade-assignment", metavar="NAME", help="assignment (default: the notebook's metadata)")
    group.addoption("--jitgrade-seed", type=int, help="seed of the hidden cases (default: fresh)")


def pytest_configure(config: pytest.Config) -> None:
    notebook = config.getoption("jitgrade", None)
    if not notebook:
        return
    if config.args_source != pytest.Config.ArgsSource.ARGS:  # no paths given: the notebook, not the folder
        config.args[:] = [str(Path(notebook))]
    elif str(Path(notebook)) not in config.args:
        config.args.append(str(Path(notebook)))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    notebook = parent.config.getoption("jitgrade", None)
    if notebook and file_path.resolve() == Path(notebook).resolve():
        return NotebookChecks.from_parent(parent, path=file_path)
    return None


class NotebookChecks(pytest.File):
    """The checks of the notebook's assignment, as test items."""

    def collect(self) -> Any:
        from grader import notebook as nb
        from grader import truth
        from grader.assignment import AssignmentError, declared, load
        from grader.checks.runner import plan

        try:
            notebook = nb.read(self.path)
            given, named = self.config.getoption("jitgrade_assignment"), notebook.assignment
            if given is not None:
                assignment = load(given)
            elif named is not None:
                assignment = declared(named)
            else:
                raise nb.NotebookError(f"{self.path}: no assignment in its metadata; pass --jitgrade-assignment")
        except (nb.NotebookError, AssignmentError) as exc:
            raise pytest.UsageError(str(exc)) from None
        self.config.stash[_KEY] = {"notebook": notebook, "assignment": assignment}
        for planned in plan(assignment, include_hidden=truth.available()):  # hidden cases need the reference
            yield CheckItem.from_parent(self, name=planned.id, check_id=planned.id, title=planned.title)


class CheckFailure(Exception):
    """A failed check, reported with its message and likely cause."""


class CheckItem(pytest.Item):
    """One check of the assignment against the notebook."""

    def __init__(self, *, check_id: str, title: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check_id = check_id
        self.title = title

    def _report(self) -> dict[str, Any]:
        state = self.config.stash[_KEY]
        if "report" not in state:
            from grader import truth
            from grader.grading import Grader
            from grader.reports.views import student_view

            seed = self.config.getoption("jitgrade_seed")
            with Grader(state["assignment"], hidden_seed=seed, include_hidden=truth.available()) as grader:
                result = grader.grade(state["notebook"], Path(self.path).stem).result
            state["report"] = {t["id"]: t for t in student_view(result.to_dict())["tests"]}
        return state["report"]

    def runtest(self) -> None:
        test = self._report()[self.check_id]
        self.user_properties.append(("score", f"{test['score']:g}/{test['max_score']:g}"))
        if test["outcome"] == "skipped":  # a students' install: the grader runs it
            pytest.skip(test["output"])
        if test["status"] != "passed":
            raise CheckFailure(test["output"])

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, CheckFailure):
            return f"{self.title}\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, self.title
