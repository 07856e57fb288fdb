"""In-notebook self-checks: the same checks as the grader, against the kernel's own functions."""

from __future__ import annotations

from typing import Any

import numpy as np
from conftest import solution_sources

from grader.assignment import load
from grader.selfcheck import Checker


def namespace(replace: dict[str, str] | None = None) -> dict[str, Any]:
    ns: dict[str, Any] = {}
    exec("import numpy as np", ns)
    for source in {**solution_sources("mlp"), **(replace or {})}.values():
        exec(source, ns)
    return ns


def test_correct_functions_pass_every_visible_check(capsys: Any) -> None:
    check = Checker(load("mlp"), namespace())
    check.check_all()
    out = capsys.readouterr().out
    assert out.count("visible checks passed") == 7 and "failed" not in out


def test_a_bug_is_reported_with_its_cause() -> None:
    bad = "def sigmoid_grad(s):\n    t = 1 / (1 + np.exp(-s))\n    return t * (1 - t)\n"
    outcomes = Checker(load("mlp"), namespace({"sigmoid_grad": bad})).run("sigmoid_grad")
    failed = [o for o in outcomes if o.status != "passed"]
    assert failed and all(not o.hidden for o in outcomes)
    assert "applies the sigmoid again" in (failed[0].diagnosis or "")


def test_checker_binds_to_the_callers_globals_and_restores_the_random_state(capsys: Any) -> None:
    ns = namespace()
    exec(
        "from grader.selfcheck import checker\ncheck = checker('mlp')\nstate = np.random.get_state()[1][:5].copy()", ns
    )
    exec("check('numerical_gradient')", ns)
    assert "visible checks passed" in capsys.readouterr().out
    assert np.array_equal(np.random.get_state()[1][:5], ns["state"])
    assert isinstance(ns["check"], Checker) and ns["check"].namespace is ns  # bound to the caller's globals


def test_missing_and_unimplemented_functions_say_so(capsys: Any) -> None:
    ns = namespace({"softmax": "def softmax(x):\n    raise NotImplementedError('todo')\n"})
    del ns["sigmoid"]
    check = Checker(load("mlp"), ns)
    check("softmax")
    check("sigmoid")
    out = capsys.readouterr().out
    assert "not implemented yet" in out and "does not define sigmoid()" in out
