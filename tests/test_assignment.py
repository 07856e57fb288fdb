"""Assignment definitions: the TOML format, its validation, and the sigmoid variant."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest
from conftest import FUNCTIONS

from grader.assignment import AssignmentError, assignment_roots, available, load
from grader.checks.runner import plan

ROOT = Path(__file__).resolve().parent.parent


def test_bundled_assignments_are_listed_and_load() -> None:
    assert {"mlp", "mlp-sigmoid"} <= set(available())
    a = load("mlp")
    assert (a.name, a.activation, a.reduction) == ("mlp", "relu", "mean")
    assert a.max_score == 100
    assert tuple(p.name for p in a.problems) == FUNCTIONS  # the student API, in the notebook's order
    assert a.tolerance("float32").rtol > a.tolerance("float64").rtol


def test_the_sigmoid_variant_differs_only_in_configuration() -> None:
    a, b = load("mlp"), load("mlp-sigmoid")
    assert (b.activation, b.reduction) == ("sigmoid", "sum")
    assert [p.name for p in a.problems] == [p.name for p in b.problems]
    assert [c.id for c in plan(a)] == [c.id for c in plan(b)]


def test_an_assignment_loads_from_a_folder_or_its_toml(tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(ROOT / "assignments" / "mlp", folder, ignore=shutil.ignore_patterns("examples"))
    assert load(folder).name == "mlp"
    assert load(folder / "assignment.toml").name == "mlp"


def write(tmp_path: Path, replace: dict[str, str]) -> Path:
    text = (ROOT / "assignments" / "mlp" / "assignment.toml").read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "assignment.toml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({'activation = "relu"': 'activation = "gelu"'}, "activation"),
        ({"[tolerances.float32]\nrtol = 1e-4\n": "[tolerances.float32]\n"}, "rtol"),
        ({"memory_mb = 2048": "memory_gb = 2"}, "unknown limits"),
        ({'name = "mlp"': "name = "}, "not valid TOML"),
        ({"hidden_share = 0.5": "hidden_share = 1.5"}, "hidden_share"),
        ({"hidden = 4\n": "hidden = 4\nhidden_seed = 7\n"}, r"'hidden_seed'.*ships to students.*--seed"),
        ({"carried_credit = 0.5": "carried_credits = 0.5"}, r"unknown key\(s\) \['carried_credits'\] in \[scoring\]"),
        ({"point_step = 0.5": 'point_step = "half"'}, "could not convert string to float"),
        ({"point_step = 0.5": "point_step = inf"}, "point_step must be > 0"),
    ],
)
def test_invalid_definitions_fail_with_a_message_naming_the_problem(
    tmp_path: Path, replace: dict[str, str], message: str
) -> None:
    with pytest.raises(AssignmentError, match=message):
        load(write(tmp_path, replace))


def test_unknown_assignment_names_list_the_available_ones() -> None:
    with pytest.raises(AssignmentError, match="mlp-sigmoid"):
        load("no-such-assignment")


def test_check_weights_in_the_definition_reshape_the_plan(tmp_path: Path) -> None:
    weights = "[problems.softmax.checks]\nfloat32 = 0\nvalues_2d = 6\n"
    folder = write(tmp_path, {"[problems.softmax]\npoints = 10\n": "[problems.softmax]\npoints = 10\n" + weights})
    planned = [c for c in plan(load(folder)) if c.problem.name == "softmax"]
    assert "float32" not in {c.check.name for c in planned}
    assert sum(c.points for c in planned) == pytest.approx(10)


def test_folders_of_assignments_loaded_from_a_path_are_roots_a_worker_must_not_read(tmp_path: Path) -> None:
    course = tmp_path / "course" / "hw3"
    shutil.copytree(ROOT / "assignments" / "mlp", course, ignore=shutil.ignore_patterns("examples"))
    assert course.resolve() not in assignment_roots()
    load(course)
    roots = assignment_roots()
    assert course.resolve() in roots and (ROOT / "assignments") in roots
    assert not any(r.is_relative_to(ROOT / "assignments") for r in roots if r != ROOT / "assignments")
    assert "hw3" not in available(), "a course folder is graded by path, never listed as bundled"


COURSE_WORDS = re.compile(r"cs224n|cs231n|eecs ?498|10707|umich|\bcmu\b", re.IGNORECASE)


def _assignment_name_uses(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """Comparisons, match cases and dict keys that test a string equal to an assignment's name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.MatchValue):
            operands = [node.value]
        elif isinstance(node, ast.Dict):
            operands = [k for k in node.keys if k is not None]
        else:
            continue
        for operand in operands:
            for leaf in ast.walk(operand):
                if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str) and leaf.value in names:
                    found.append((getattr(node, "lineno", 0), leaf.value))
    return found


def test_no_grader_code_branches_on_an_assignment_name() -> None:
    """A new course is an assignment folder (DESIGN invariant 7): nothing in grader/ or reference/ compares
    with an assignment's name or mentions a course."""
    root = ROOT
    names = {p.parent.name for p in (root / "assignments").glob("*/assignment.toml")}
    assert {"mlp", "mlp-sigmoid"} <= names
    offenders = []
    for path in sorted([*(root / "grader").rglob("*.py"), *(root / "reference").rglob("*.py")]):
        source = path.read_text()
        offenders += [f"{path.relative_to(root)}:{line}: {name!r}" for line, name in
                      _assignment_name_uses(ast.parse(source), names)]
        offenders += [f"{path.relative_to(root)}: mentions {m.group()!r}" for m in COURSE_WORDS.finditer(source)]
    assert not offenders, offenders


def test_the_name_check_finds_a_branch() -> None:
    """The check above can fail: a comparison, a match case and a dict key are each found."""
    tree = ast.parse("if a.name == 'mlp':\n    pass\nmatch n:\n    case 'mlp-sigmoid':\n        pass\nd = {'mlp': 1}\n")
    found = sorted(name for _, name in _assignment_name_uses(tree, {"mlp", "mlp-sigmoid"}))
    assert found == ["mlp", "mlp", "mlp-sigmoid"]


def test_a_notebook_named_assignment_is_the_bundled_one_whatever_the_working_folder_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A student's repository (the working folder of `jitgrade check` in CI) may hold a folder named like the
    assignment with a definition of its own: the notebook's metadata must still get the bundled one."""
    from grader.assignment import declared

    bundled = load("mlp")
    (tmp_path / "mlp").mkdir()
    own = write(tmp_path / "mlp", {"points = 10\n": "points = 1000\n"})
    assert load(own).max_score != bundled.max_score  # the folder would change the points
    monkeypatch.chdir(tmp_path)
    found = declared("mlp")
    assert found.max_score == bundled.max_score
    assert found.directory.resolve() == bundled.directory.resolve()
