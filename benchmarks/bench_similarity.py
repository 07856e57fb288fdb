"""How fast is `jitgrade similarity` on a large class, and does it find every planted copy?

A generated class of 1,000 submissions of `mlp` (200 with --quick), each the student template with
its seven functions written by a random program generator (loops, branches, NumPy calls, temporaries:
independent work that shares only idioms), plus planted copy groups: a submission and 1 to 4 copies
of it, each copy under a random disguise from tests/data/similarity/disguise.py (renamed, reformatted,
commented, reordered, literals changed, dead code inserted, or all combined).

The whole command `jitgrade similarity CLASS -a mlp --out DIR --jobs 2` is timed, from process start
to exit (fingerprinting on two local processes, the index, scoring, writing the CSV and every page),
and its peak memory is read from the kernel (the largest resident set of the command's processes).
Target: <= 60 s for 1,000 submissions on 2 cores. Before any number is written, the report of the
last run is checked: every planted group is found (its members connected by flagged pairs, in one
group when there are three or more), and no pair of independent submissions is flagged.

    python benchmarks/bench_similarity.py [--quick] [--json PATH]
"""

from __future__ import annotations

import csv
import json
import random
import resource
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data" / "similarity"))

import disguise  # noqa: E402
from _common import REPO_ROOT, Report, Target, Timing, parse_args, time_command  # noqa: E402

TEMPLATE = REPO_ROOT / "student_template" / "mlp.ipynb"
SIGNATURES = {
    "softmax": ["x"], "sigmoid": ["x"], "sigmoid_grad": ["s"], "softmax_cross_entropy": ["z", "y"],
    "mlp_forward": ["X", "params"], "mlp_loss": ["X", "y", "params", "reg"], "numerical_gradient": ["f", "x", "h"],
}
FUNCTIONS = ("exp", "log", "maximum", "sum", "mean", "max", "abs", "sqrt", "tanh", "where", "clip", "dot", "square")
OPERATORS = ("+", "-", "*", "/", "@")
GROUP_SIZES = (2, 2, 3, 3, 4, 5)  # planted groups: an original and size - 1 copies
SEED = 20261128


# ----------------------------------------------------------------------------- the class


def expression(rng: random.Random, names: list[str], depth: int = 0) -> str:
    """A random NumPy expression over the names in scope."""
    roll = rng.random()
    if depth > 2 or roll < 0.3:
        return rng.choice(names) if rng.random() < 0.8 else repr(round(rng.uniform(0, 3), rng.randint(0, 2)))
    if roll < 0.6:
        args = [expression(rng, names, depth + 1)]
        if rng.random() < 0.4:
            args.append(f"axis={rng.choice([0, 1, -1])}")
        if rng.random() < 0.2:
            args.append("keepdims=True")
        return f"np.{rng.choice(FUNCTIONS)}({', '.join(args)})"
    if roll < 0.85:
        left, right = expression(rng, names, depth + 1), expression(rng, names, depth + 1)
        return f"({left} {rng.choice(OPERATORS)} {right})"
    return f"{rng.choice(names)}[{rng.choice(['0', ':, 0', 'i', '1:', '..., None', 'y'])}]"


def statements(rng: random.Random, names: list[str], indent: str, count: int, depth: int = 0) -> list[str]:
    """Random statements: assignments to new temporaries, in-place updates, loops and branches."""
    lines = []
    for _ in range(count):
        roll = rng.random()
        if depth < 2 and roll < 0.15:
            lines.append(f"{indent}for i in range({rng.choice(names)}.shape[0]):")
            lines += statements(rng, [*names, "i"], indent + "    ", rng.randint(1, 3), depth + 1)
        elif depth < 2 and roll < 0.28:
            lines.append(f"{indent}if np.{rng.choice(FUNCTIONS)}({rng.choice(names)}).any():")
            lines += statements(rng, names, indent + "    ", rng.randint(1, 2), depth + 1)
        elif roll < 0.4 and len(names) > 1:
            lines.append(f"{indent}{rng.choice(names)} {rng.choice(OPERATORS[:4])}= {expression(rng, names)}")
        else:
            name = f"{rng.choice(['t', 'tmp', 'v', 'a', 'out', 'acc', 'g'])}{len(names)}"
            lines.append(f"{indent}{name} = {expression(rng, names)}")
            names = [*names, name]
    return lines


def random_solution(rng: random.Random) -> str:
    """Seven functions with the assignment's signatures and random bodies of 4 to 12 statements."""
    functions = []
    for name, params in SIGNATURES.items():
        body = statements(rng, list(params), "    ", rng.randint(4, 12))
        returned = ", ".join(rng.sample([line.split(" = ")[0].strip() for line in body if " = " in line]
                                        or list(params), 1))
        functions.append(f"def {name}({', '.join(params)}):\n" + "\n".join(body) + f"\n    return {returned}\n")
    return "\n\n".join(functions)


def build_class(folder: Path, size: int, rng: random.Random) -> list[list[str]]:
    """Write `size` submissions into folder; the planted groups (lists of student ids) come back."""
    template = json.loads(TEMPLATE.read_text())
    disguises = list(disguise.DISGUISES.values())
    planted: list[list[str]] = []
    written = 0
    for number, group_size in enumerate(GROUP_SIZES * max(1, size // 200)):
        code = random_solution(rng)
        members = [f"planted{number}-{k}" for k in range(group_size)]
        for k, student in enumerate(members):
            text = code if k == 0 else rng.choice(disguises)(code)
            (folder / f"{student}.ipynb").write_text(json.dumps(disguise.notebook(text, template)))
        planted.append(members)
        written += group_size
    for k in range(size - written):
        (folder / f"student{k:04d}.ipynb").write_text(json.dumps(disguise.notebook(random_solution(rng), template)))
    return planted


# ----------------------------------------------------------------------------- the check


def check(out: Path, planted: list[list[str]]) -> dict[str, int]:
    """Every planted group found and nothing else flagged, from the report's CSV; the counts."""
    rows = list(csv.DictReader((out / "similarity.csv").open()))
    flagged = [r for r in rows if r["flagged"] == "yes" and r["other_corpus"] == "class"]
    group_of = {student: number for number, members in enumerate(planted) for student in members}
    edges = {frozenset((r["student"], r["other"])) for r in flagged}
    for members in planted:
        reached = {members[0]}
        for _ in members:
            reached |= {s for e in edges if e & reached for s in e}
        if not set(members) <= reached:
            raise SystemExit(f"bench_similarity: planted group {members} not found; reached {sorted(reached)}")
    strays = [r for r in flagged if group_of.get(r["student"], -1) != group_of.get(r["other"], -2)]
    if strays:
        raise SystemExit(f"bench_similarity: {len(strays)} flagged pairs of independent submissions, e.g. {strays[0]}")
    groups = {r["group"] for r in flagged if r["group"]}
    expected = sum(len(m) >= 3 for m in planted)
    if len(groups) != expected:
        raise SystemExit(f"bench_similarity: {len(groups)} groups of three or more in the report, {expected} planted")
    return {"planted_groups": len(planted), "flagged_pairs": len(flagged), "groups_of_three_or_more": len(groups)}


def main() -> None:
    args = parse_args("bench_similarity", __doc__)
    size = 200 if args.quick else 1000
    runs = 2 if args.quick else 3
    report = Report("bench_similarity", quick=args.quick)
    work = Path(tempfile.mkdtemp(prefix="jitgrade-bench-similarity-"))
    try:
        klass, out = work / "class", work / "out"
        klass.mkdir()
        planted = build_class(klass, size, random.Random(SEED))
        command = [sys.executable, "-m", "grader", "similarity", str(klass), "-a", "mlp", "--out", str(out),
                   "--jobs", "2"]
        timing: Timing = time_command(command, runs=runs, cwd=REPO_ROOT)
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        report.notes.update(check(out, planted))
        report.notes["peak_memory_mib"] = round(peak_mib, 1)
        report.notes["submissions"] = size
        report.add("similarity_class", f"jitgrade similarity, a class of {size}, --jobs 2 (peak {peak_mib:.0f} MiB)",
                   timing, target=Target.max_seconds(60.0 * size / 1000, f"<= {60 * size // 1000} s"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.print_table()
    print(f"planted groups found: {report.notes['planted_groups']} of {report.notes['planted_groups']}; "
          f"flagged pairs: {report.notes['flagged_pairs']}; peak memory {report.notes['peak_memory_mib']} MiB")
    report.write_json(args.json)


if __name__ == "__main__":
    main()
