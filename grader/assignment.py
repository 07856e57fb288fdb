"""Assignment definitions: a declarative TOML file per assignment, loaded into frozen dataclasses.

A variant of an assignment (another activation, summed instead of averaged loss, other
points or tolerances) is a change of this file and of its master notebook, never of code.
See ``assignments/mlp/assignment.toml`` for the documented format.

Public and private: students install jitgrade too, so of an assignment folder only
``assignment.toml`` (PUBLIC_FILES) ships in the package and in the Gradescope bundle; every
other file of the folder (the master notebook, examples, notes, hidden-case data) is private and
stays in the instructors' course repository. The student notebook lives in student_template/.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader import bindings
from grader.bindings import Binding
from grader.sandbox.limits import Limits

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFINITION = "assignment.toml"
EXPECTED = "selfcheck.npz"  # the reference's answers on the visible cases, for installs without it (grader.truth)
PUBLIC_FILES = (DEFINITION, EXPECTED)  # every other file of an assignment folder is private (pyproject.toml mirrors it)
PUBLIC_FOLDERS = ("helpers",)  # ... but these: course helper modules students import (grader.pyfiles), public too
ACTIVATIONS = ("relu", "sigmoid", "tanh")
REDUCTIONS = ("mean", "sum")
MAX_HIDDEN_LAYERS = 8  # [reference] hidden_layers: 1 (a two-layer net, the default) up to this
BAD_HIDDEN_LAYERS = (
    "{where}: [reference] hidden_layers must be a whole number from 1 to {most} (the network's depth is "
    "hidden_layers + 1 weight layers), got {found!r}"
)
CASES_KEYS = ("visible_seed", "visible", "hidden", "hidden_share")
SCORING_KEYS = ("carried_credit", "shape_slip_credit", "point_step")

MASTER_NOT_INSTALLED = (
    "the master notebook of {name} is not installed with jitgrade (solutions never ship in the package; "
    "expected {master}); pass the assignment folder from your course repository: -a path/to/{name}"
)
UNKNOWN_CASES_KEYS = (
    "{where}: unknown key(s) {keys} in [cases]: expected some of {known}. This file ships to students, "
    "so it holds no hidden seed: jitgrade draws a fresh one per run (recorded in the reports), or pass --seed"
)

BAD_PRELOAD = (
    '{where}: [sandbox] preload must be a list of module names such as ["torch"], got {found!r}; '
    "the sandbox imports these once, before any submission runs"
)
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class AssignmentError(ValueError):
    """An assignment cannot be found or its definition is invalid."""


@dataclass(frozen=True)
class Tolerance:
    """Elementwise closeness: |found - expected| <= atol + rtol * |expected|."""

    rtol: float
    atol: float


@dataclass(frozen=True)
class Problem:
    """One student function: its points and which checks grade it (with optional weights)."""

    name: str
    kind: str
    points: float
    weights: dict[str, float] = field(default_factory=dict)
    binding: Binding = None  # type: ignore[assignment]  # how its checks call the student's code (default: by name)

    def __post_init__(self) -> None:
        if self.binding is None:
            object.__setattr__(self, "binding", bindings.parse(self.name, self.kind, None, "default"))


@dataclass(frozen=True)
class Assignment:
    """Everything the grader needs to know about one assignment."""

    name: str
    version: str
    title: str
    directory: Path
    master: Path
    template: str
    activation: str
    reduction: str
    reg: float
    tolerances: dict[str, Tolerance]
    visible_seed: int
    visible_cases: int
    hidden_cases: int
    hidden_share: float
    limits: Limits
    problems: tuple[Problem, ...]
    examples: Path | None
    carried_credit: float = 0.5  # [scoring]: the most a gradient earns by being exact for a wrong loss
    shape_slip_credit: float = 0.5  # [scoring]: the share a right value returned in a wrong shape earns
    point_step: float = 0.5  # [scoring]: every check's points are a whole multiple of this
    preload: tuple[str, ...] = ()  # [sandbox]: modules the sandbox imports once, before any submission runs
    submission: dict[str, Any] = field(default_factory=dict)  # [submission]: what students hand in (grader.pyfiles)
    hidden_layers: int = 1  # [reference]: L, the number of hidden layers of a network of any depth (deep_mlp_loss)

    @property
    def template_path(self) -> Path | None:
        """The generated student notebook (student_template/<template>), when it exists."""
        for root in template_roots():
            if (root / self.template).is_file():
                return root / self.template
        return None

    def require_master(self) -> Path:
        """The master notebook, or a clear error where only the public definition is installed."""
        if not self.master.is_file():
            raise AssignmentError(MASTER_NOT_INSTALLED.format(name=self.name, master=self.master))
        return self.master

    @property
    def max_score(self) -> float:
        """Total points."""
        return sum(p.points for p in self.problems)

    def tolerance(self, dtype: Any) -> Tolerance:
        """The tolerance for results of a given dtype (float32 or float64)."""
        key = "float32" if str(dtype) == "float32" else "float64"
        return self.tolerances[key]

    def defines(self) -> dict[str, str]:
        """Each problem's name -> the name the student's code defines for it (the function, or a method's class)."""
        return {p.name: p.binding.cls or p.binding.call for p in self.problems}

    def problem(self, name: str) -> Problem:
        """The problem grading the student function `name`."""
        for p in self.problems:
            if p.name == name:
                return p
        raise KeyError(f"assignment {self.name} has no problem {name!r}; it has {[p.name for p in self.problems]}")


_loaded: set[Path] = set()  # folders of assignments this process loaded from outside the bundled roots


def bundled_roots() -> list[Path]:
    """Folders holding bundled assignments: the source tree's, or the installed package's public copy."""
    here = Path(__file__).resolve().parent
    return [p for p in (here.parent / "assignments", here / "_bundled" / "assignments") if p.is_dir()]


def assignment_roots() -> list[Path]:
    """Folders that may hold private assignment files, which a worker must never read: the bundled
    roots and the folder of every assignment this process loaded from a path (a course repository's)."""
    bundled = bundled_roots()
    resolved = [b.resolve() for b in bundled]
    outside = [d for d in sorted(_loaded.copy()) if not any(d.is_relative_to(b) for b in resolved)]
    return bundled + outside


def template_roots() -> list[Path]:
    """Folders holding the generated student notebooks: the source tree's, or the installed copy."""
    here = Path(__file__).resolve().parent
    return [p for p in (here.parent / "student_template", here / "_bundled" / "student_template") if p.is_dir()]


def available() -> list[str]:
    """Names of the bundled assignments."""
    return sorted({d.name for root in bundled_roots() for d in root.iterdir() if (d / DEFINITION).is_file()})


def find(name_or_path: str | Path) -> Path:
    """The definition file for a bundled assignment name, a folder, or a TOML path."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if (path / DEFINITION).is_file():
        return path / DEFINITION
    for root in bundled_roots():
        candidate = root / str(name_or_path) / DEFINITION
        if candidate.is_file():
            return candidate
    raise AssignmentError(
        f"unknown assignment {str(name_or_path)!r}: expected one of {available()} or a folder containing {DEFINITION}"
    )


NO_REG = (
    "{where}: [problems.{problem}.binding] passes no reg, but [reference] reg = {reg}: the student's function "
    "would be graded against a regularized loss it cannot compute; pass reg (args or kwargs) or set reg = 0"
)
NOT_BUNDLED = (
    "the notebook's metadata names the assignment {name!r}, and a notebook may only name a bundled assignment "
    "({known}): the student controls that metadata, so a folder or file it names could define its own points "
    "and tolerances; give the course's assignment with -a (for example -a path/to/mlp)"
)


def declared(name: str) -> Assignment:
    """The assignment a notebook's own metadata names: a bundled one only, never a path (a submission must not
    choose the definition it is graded by)."""
    if name not in available():
        raise AssignmentError(NOT_BUNDLED.format(name=name, known=", ".join(available()) or "none installed"))
    # from the bundled root itself: load(name) would first try `name` as a path, which the working folder
    # (a student's repository in CI) may hold with a definition of its own
    return load(next(d for root in bundled_roots() if ((d := root / name) / DEFINITION).is_file()))


def _require(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise AssignmentError(f"{where}: missing required key {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise AssignmentError(f"{where}: {key!r} must be {kind}, got {value!r}")
    return value


def load(name_or_path: str | Path) -> Assignment:
    """Load and validate an assignment definition."""
    path = find(name_or_path)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise AssignmentError(f"{where}: not valid TOML: {exc}") from None
    directory = path.parent
    _loaded.add(directory.resolve())
    ref = data.get("reference", {})
    activation = ref.get("activation", "relu")
    reduction = ref.get("reduction", "mean")
    if activation not in ACTIVATIONS or reduction not in REDUCTIONS:
        raise AssignmentError(f"{where}: [reference] activation must be in {ACTIVATIONS}, reduction in {REDUCTIONS}")
    hidden_layers = ref.get("hidden_layers", 1)
    if type(hidden_layers) is not int or not 1 <= hidden_layers <= MAX_HIDDEN_LAYERS:
        raise AssignmentError(BAD_HIDDEN_LAYERS.format(where=where, most=MAX_HIDDEN_LAYERS, found=hidden_layers))
    tolerances = {}
    for dtype in ("float64", "float32"):
        table = data.get("tolerances", {}).get(dtype)
        if not isinstance(table, dict):
            raise AssignmentError(f"{where}: missing [tolerances.{dtype}] with rtol and atol")
        tolerances[dtype] = Tolerance(
            float(_require(table, "rtol", (int, float), where)), float(_require(table, "atol", (int, float), where))
        )
    cases = data.get("cases", {})
    unknown = sorted(set(cases) - set(CASES_KEYS))
    if unknown:
        raise AssignmentError(UNKNOWN_CASES_KEYS.format(where=where, keys=unknown, known=list(CASES_KEYS)))
    try:
        limits = Limits().override(**data.get("limits", {}))
    except (ValueError, TypeError) as exc:
        raise AssignmentError(f"{where}: [limits]: {exc}") from None
    problems = []
    for name, table in _require(data, "problems", dict, where).items():
        if not isinstance(table, dict):
            raise AssignmentError(f"{where}: [problems.{name}] must be a table")
        weights = table.get("checks", {})
        if not isinstance(weights, dict):
            raise AssignmentError(f"{where}: [problems.{name}.checks] must be a table of check = weight")
        for check_name, weight in weights.items():
            if not isinstance(weight, (int, float)) or weight < 0:
                raise AssignmentError(
                    f"{where}: [problems.{name}.checks] {check_name} = {weight!r}: "
                    "a weight is a number >= 0 (0 disables the check)"
                )
        kind = str(table.get("kind", name))
        try:
            binding = bindings.parse(name, kind, table.get("binding"), where)
        except bindings.BindingError as exc:
            raise AssignmentError(str(exc)) from None
        if (
            "reg" in bindings.SIGNATURES.get(kind, ((), ()))[0]
            and float(ref.get("reg", 0.0)) != 0
            and not binding.passes("reg")
        ):
            raise AssignmentError(NO_REG.format(where=where, problem=name, reg=ref.get("reg")))
        problems.append(
            Problem(
                name,
                kind,
                float(_require(table, "points", (int, float), where)),
                {str(k): float(v) for k, v in weights.items()},
                binding,
            )
        )
    preload = data.get("sandbox", {}).get("preload", [])
    if not isinstance(preload, list) or not all(isinstance(m, str) and MODULE_NAME.fullmatch(m) for m in preload):
        raise AssignmentError(BAD_PRELOAD.format(where=where, found=preload))
    scoring = data.get("scoring", {})
    unknown = sorted(set(scoring) - set(SCORING_KEYS)) if isinstance(scoring, dict) else ["(not a table)"]
    if unknown:
        raise AssignmentError(f"{where}: unknown key(s) {unknown} in [scoring]: expected some of {list(SCORING_KEYS)}")
    master = directory / str(data.get("master", "solution.ipynb"))
    examples = directory / "examples"
    try:
        assignment = Assignment(
            name=str(_require(data, "name", str, where)),
            version=str(_require(data, "version", str, where)),
            title=str(data.get("title", data["name"])),
            directory=directory,
            master=master,
            template=str(data.get("template", f"{data['name']}.ipynb")),
            activation=activation,
            reduction=reduction,
            reg=float(ref.get("reg", 0.0)),
            tolerances=tolerances,
            visible_seed=int(cases.get("visible_seed", 0)),
            visible_cases=int(cases.get("visible", 2)),
            hidden_cases=int(cases.get("hidden", 4)),
            hidden_share=float(cases.get("hidden_share", 0.5)),
            limits=limits,
            problems=tuple(problems),
            examples=examples if examples.is_dir() else None,
            carried_credit=float(scoring.get("carried_credit", 0.5)),
            shape_slip_credit=float(scoring.get("shape_slip_credit", 0.5)),
            point_step=float(scoring.get("point_step", 0.5)),
            preload=tuple(preload),
            submission=dict(data.get("submission", {})),
            hidden_layers=hidden_layers,
        )
    except AssignmentError:
        raise
    except (ValueError, TypeError) as exc:  # a number given as text, a table where a number belongs
        raise AssignmentError(f"{where}: {exc}") from None
    if not 0.0 <= assignment.hidden_share <= 1.0:
        raise AssignmentError(f"{where}: [cases] hidden_share must lie in [0, 1]")
    if not 0.0 <= assignment.carried_credit <= 1.0:
        raise AssignmentError(f"{where}: [scoring] carried_credit must lie in [0, 1]")
    if not 0.0 <= assignment.shape_slip_credit <= 1.0:
        raise AssignmentError(f"{where}: [scoring] shape_slip_credit must lie in [0, 1]")
    if not 0 < assignment.point_step < float("inf"):
        raise AssignmentError(f"{where}: [scoring] point_step must be > 0 and finite (e.g. 0.5, 1 or 0.01)")
    return assignment
