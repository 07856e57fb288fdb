"""Red team, round three: the surfaces added last (.py submissions, bindings and class methods, PyTorch, handles,
similarity) attacked by one hostile submission at a time.

For each attack class, the contained outcome: the hostile submission gets a clear entry in its own report (or
its own row), the other rows and the gradebook are complete and unchanged, nothing the grader owns is read,
and nothing the student wrote reaches a report unescaped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from grader import cli
from grader.executors import task_of
from grader.submissions import discover

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "assignments" / "mlp" / "examples"
CORRECT = EXAMPLES / "alice.ipynb"  # 100/100
MASTER = ROOT / "assignments" / "mlp" / "solution.ipynb"
PYDEMO = ROOT / "tests" / "data" / "pyfiles"
PYFILES = ("pf_softmax.py", "pf_sigmoid.py")
LIMITS = ["--cell-timeout", "2", "--call-timeout", "1", "--notebook-timeout", "15", "--seed", "5"]


def rows_of(out: Path) -> dict[str, dict[str, str]]:
    """The gradebook's rows by student."""
    return {r["student"]: r for r in csv.DictReader(io.StringIO((out / cli.GRADEBOOK).read_text()))}


# --------------------------------------------------------------------------- links and special files


def _link_to_master(folder: Path) -> None:
    (folder / "dave").mkdir(parents=True)
    os.symlink(MASTER, folder / "dave" / "mlp.ipynb")  # a student's repository linking to the master


def _link_to_host_file(folder: Path) -> None:
    os.symlink("/etc/passwd", folder / "mallory.ipynb")


def _fifo_notebook(folder: Path) -> None:
    (folder / "erin").mkdir(parents=True)
    os.mkfifo(folder / "erin" / "mlp.ipynb")  # reading it would block the batch for ever


def _linked_folder(folder: Path) -> None:
    os.symlink(MASTER.parent, folder / "frank")


NOTEBOOK_LINKS = {
    "dave": _link_to_master,
    "mallory": _link_to_host_file,
    "erin": _fifo_notebook,
    "frank": _linked_folder,
}


@pytest.mark.parametrize("attack", list(NOTEBOOK_LINKS))
def test_a_link_or_special_file_in_a_class_folder_is_never_read(attack: str, tmp_path: Path) -> None:
    """Never followed: a link to the master (full marks), to a host file (its content in a report), a FIFO
    (the batch hangs reading it), a linked folder; the student's row says why, the others are read."""
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "alice.ipynb").write_bytes(CORRECT.read_bytes())
    NOTEBOOK_LINKS[attack](folder)
    found = {s.student: s for s in discover([folder], preferred="mlp.ipynb")}
    assert set(found) == {"alice", attack}
    assert found[attack].path is None and "symbolic link or a special file" in str(found[attack].problem)
    task = task_of(attack, found[attack])
    assert task.data is None and "hand in the" in str(task.problem)
    assert task_of("alice", found["alice"]).data == CORRECT.read_bytes()


PY_LINKS = {
    "carol": lambda folder: os.symlink(PYDEMO / "solution" / "pf_softmax.py", folder / "carol.py"),
    "dave": lambda folder: os.symlink(PYDEMO / "solution", folder / "dave"),
    "erin": lambda folder: os.mkfifo(folder / "erin.py"),
    "gina": lambda folder: os.symlink(PYDEMO / "solution" / "pf_softmax.py", folder / "gina_1_2_pf_softmax.py"),
}


@pytest.mark.parametrize("attack", list(PY_LINKS))
def test_a_link_or_special_file_among_py_submissions_is_never_read(attack: str, tmp_path: Path) -> None:
    """The same for a .py class: a linked file or folder is its student's problem, a linked Canvas-named file
    is left out (its student's row names it missing), a FIFO is never opened."""
    folder = tmp_path / "class"
    (folder / "zed").mkdir(parents=True)
    for name in PYFILES:
        (folder / "zed" / name).write_bytes((PYDEMO / "solution" / name).read_bytes())
    PY_LINKS[attack](folder)
    found = {s.student: s for s in discover([folder], workdir=tmp_path, python=PYFILES)}
    for student, submission in found.items():
        task = task_of(student, submission)
        if student == "zed":
            assert task.data is not None
            continue
        assert task.data is None or b"np.exp" not in task.data, f"{student}: the master's file was read"
    if attack == "gina":
        assert set(found) == {"zed", "gina"} and found["gina"].path is not None
        assert list(found["gina"].path.iterdir()) == []
    else:
        assert set(found) == {"zed", attack} and "symbolic link or a special file" in str(found[attack].problem)


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


HOSTILE_EXPORTS = {  # members a file system cannot hold as named, beside a correct student's notebook
    "file-then-folder": [("mallory/x.ipynb", b"{}"), ("mallory/x.ipynb/y.ipynb", b"{}")],
    "folder-then-file": [("mallory/x/y.ipynb", b"{}"), ("mallory/x", b"{}")],
    "name-too-long": [("m" * 300 + ".ipynb", b"{}")],
    "too-deep": [("/".join(["d"] * 2000) + "/x.ipynb", b"{}")],
}


@pytest.mark.parametrize("attack", list(HOSTILE_EXPORTS))
def test_a_zip_export_with_names_the_disk_cannot_hold_still_yields_the_class(attack: str, tmp_path: Path) -> None:
    """One student's odd file name in a platform export (Canvas keeps the student's file name) never stops the
    discovery of the whole class: that member is left out, the others are extracted."""
    archive = _zip(tmp_path / "export.zip", [("alice.ipynb", CORRECT.read_bytes()), *HOSTILE_EXPORTS[attack]])
    found = {s.student: s for s in discover([archive], workdir=tmp_path, preferred="mlp.ipynb")}
    assert "alice" in found and found["alice"].path is not None
    assert found["alice"].path.read_bytes() == CORRECT.read_bytes()


def test_a_linked_master_in_a_graded_class_scores_nothing_and_alice_keeps_her_points(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    (folder / "alice.ipynb").write_bytes(CORRECT.read_bytes())
    _link_to_master(folder)
    _fifo_notebook(folder)
    code = cli.main(["grade", str(folder), "-a", "mlp", "--out", str(out), *LIMITS, "--isolation", "process"])
    assert code == 0, capsys.readouterr().err
    rows = rows_of(out)
    assert set(rows) == {"alice", "dave", "erin"}
    assert float(rows["alice"]["score"]) == 100
    for student in ("dave", "erin"):
        assert float(rows[student]["score"]) == 0 and "symbolic link" in rows[student]["error"]
        report = json.loads((out / student / "report.json").read_text())
        assert "hand in the notebook itself" in str(report["error"])


# --------------------------------------------------------------------------- .py submissions: archives and encodings


def _zip_bytes(files: dict[str, bytes], damage: str | None = None) -> bytes:
    """A zip of the files; damage: "encrypted" (the members' encryption flag set) or "corrupt" (a member's
    compressed stream overwritten)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    data = bytearray(buf.getvalue())
    if damage == "encrypted":
        for signature, flag in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            at = data.find(signature)
            while at >= 0:
                data[at + flag] |= 1
                at = data.find(signature, at + 4)
    elif damage == "corrupt":
        at = data.find(b"PK\x03\x04")
        start = at + 30 + int.from_bytes(data[at + 26 : at + 28], "little")
        data[start : start + 40] = b"\xff" * 40
    return bytes(data)


def _solution_files(**replace: bytes) -> dict[str, bytes]:
    return {name: replace.get(name.removesuffix(".py"), (PYDEMO / "solution" / name).read_bytes()) for name in PYFILES}


PUNYCODE = b"# coding: punycode\n-" + b"a" * 5000  # punycode decodes in quadratic time: 1 MiB of it takes minutes
HOSTILE_PY = {  # student -> (what is written in the class folder, what the student's report must say)
    "bob.zip": (_zip_bytes(_solution_files(), "encrypted"), "not a valid zip archive"),
    "carl.zip": (_zip_bytes(_solution_files(), "corrupt"), "not a valid zip archive"),
    "dora.zip": (_zip_bytes(_solution_files(pf_softmax=PUNYCODE)), "declares the encoding 'punycode'"),
    "ezra.zip": (_zip_bytes(_solution_files(pf_softmax=b"# -*- coding: rot13 -*-\nvzcbeg ahzcl\n")), "rot13"),
}


def test_damaged_zips_and_hostile_encodings_cost_only_their_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An encrypted or corrupt zip used to raise out of the reader (RuntimeError, zlib.error) and stop the whole
    batch; a coding declaration naming a slow codec (punycode) decoded on the grader's side for minutes."""
    folder, out = tmp_path / "class", tmp_path / "out"
    (folder / "zed").mkdir(parents=True)
    for name, data in _solution_files().items():
        (folder / "zed" / name).write_bytes(data)
    for name, (data, _) in HOSTILE_PY.items():
        (folder / name).write_bytes(data)
    latin1 = "# coding: latin-1\nassert 'caf\u00e9' == 'caf\\xe9', 'decoded twice'\n".encode("latin-1")
    (folder / "fay.zip").write_bytes(
        _zip_bytes(_solution_files(pf_sigmoid=latin1 + _solution_files()["pf_sigmoid.py"]))
    )
    code = cli.main(["grade", str(folder), "-a", str(PYDEMO), "--out", str(out), *LIMITS, "--isolation", "process"])
    assert code == 0, capsys.readouterr().err
    rows = rows_of(out)
    assert set(rows) == {"zed", "fay", *(Path(n).stem for n in HOSTILE_PY)}
    assert float(rows["zed"]["score"]) == float(rows["fay"]["score"]) == 15  # a latin-1 file runs as the grader read it
    for name, (_, said) in HOSTILE_PY.items():
        report = (out / Path(name).stem / "report.json").read_text()
        assert said in report, (name, report[:2000])


# --------------------------------------------------------------------------- bindings and PyTorch: what comes back

TORCH_PASS = """
import torch
def nn_forward_pass(params, X):
    hidden = (X.mm(params["W1"]) + params["b1"]).clamp(min=0)
    return hidden.mm(params["W2"]) + params["b2"], hidden
"""
TORCH_GOOD = """
def _good(params, X, y=None, reg=0.0):
    W1, W2 = params["W1"], params["W2"]
    scores, hidden = nn_forward_pass(params, X)
    if y is None:
        return scores
    n = X.shape[0]
    log_probs = scores.log_softmax(dim=1)
    rows = torch.arange(n)
    loss = -log_probs[rows, y].mean() + reg * ((W1 * W1).sum() + (W2 * W2).sum())
    dscores = log_probs.exp()
    dscores[rows, y] -= 1
    dscores /= n
    grads = {"W2": hidden.t().mm(dscores) + 2 * reg * W2, "b2": dscores.sum(dim=0)}
    dhidden = dscores.mm(W2.t()) * (hidden > 0)
    grads["W1"] = X.t().mm(dhidden) + 2 * reg * W1
    grads["b1"] = dhidden.sum(dim=0)
    return loss, grads
"""
TORCH_RETURNS = {  # variant -> (nn_forward_backward, points it must get out of 100)
    "correct": ("nn_forward_backward = _good", 100),
    "namedtuple-of-ordereddict": (
        """
import collections
Answer = collections.namedtuple("Answer", "loss grads")
def nn_forward_backward(params, X, y=None, reg=0.0):
    out = _good(params, X, y, reg)
    return out if y is None else Answer(out[0], collections.OrderedDict(out[1]))
""",
        100,
    ),
    "dict-subclass-whose-methods-lie-and-loop": (
        """
class Lying(dict):
    def items(self):
        return [("W1", 0)]
    def __iter__(self):
        while True:
            yield "W1"
    def __len__(self):
        return 10**9
def nn_forward_backward(params, X, y=None, reg=0.0):
    out = _good(params, X, y, reg)
    return out if y is None else (out[0], Lying(out[1]))
""",
        100,  # what it holds is the right answer; its overrides cannot make the channel loop or read another
    ),
    "parameters-with-grad": (
        """
def nn_forward_backward(params, X, y=None, reg=0.0):
    out = _good(params, X, y, reg)
    if y is None:
        return out
    return torch.nn.Parameter(out[0]), {k: torch.nn.Parameter(v) for k, v in out[1].items()}
""",
        100,
    ),
    "subclass-whose-torch-function-loops": (
        """
class Spin(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        while True:
            pass
def nn_forward_backward(params, X, y=None, reg=0.0):
    out = _good(params, X, y, reg)
    return out if y is None else (out[0].as_subclass(Spin), out[1])
""",
        25,
    ),
    "sparse-meta-complex-quantized": (
        """
def nn_forward_backward(params, X, y=None, reg=0.0):
    loss, grads = _good(params, X, torch.zeros(X.shape[0], dtype=torch.long) if y is None else y, reg)
    if y is None:
        return torch.zeros(3, 3, device="meta")
    return loss.to(torch.complex128), {
        "W1": grads["W1"].to_sparse(), "b1": grads["b1"].to(torch.bfloat16),
        "W2": torch.empty(grads["W2"].shape, device="meta"),
        "b2": torch.quantize_per_tensor(grads["b2"].float(), 0.1, 0, torch.qint8)}
""",
        25,
    ),
    "huge-broadcast-view": (
        """
def nn_forward_backward(params, X, y=None, reg=0.0):
    loss, grads = _good(params, X, y, reg) if y is not None else (None, None)
    if y is None:
        return _good(params, X)
    return loss, {**grads, "W1": torch.zeros(1, dtype=torch.float64).expand(10**6, 10**5)}
""",
        25,
    ),
}


@pytest.mark.parametrize("variant", list(TORCH_RETURNS))
def test_what_a_torch_binding_returns_is_graded_for_its_values_alone(grade, variant: str) -> None:
    """Containers of the standard kinds' subclasses (a namedtuple, an OrderedDict: common, and correct) used to be
    refused, costing a correct answer 75 points; exotic tensors, tensors that loop or that are too large cost only
    that problem, with a message."""
    pytest.importorskip("torch")
    code, expected = TORCH_RETURNS[variant]
    report = grade([TORCH_PASS, TORCH_GOOD, code], assignment="eecs498-two-layer")
    assert report["error"] is None
    assert report["score"] == expected, [t["message"][:200] for t in report["tests"] if t["status"] != "passed"][:3]


NUMPY_RETURNS = {  # mlp's mlp_loss returning a namedtuple of an OrderedDict (or a defaultdict): the right answer
    "namedtuple": "collections.namedtuple('Loss', 'loss grads')(*out)",
    "ordereddict": "(out[0], collections.OrderedDict(out[1]))",
    "defaultdict-in-a-list": "[out[0], collections.defaultdict(float, out[1])]",
}


@pytest.mark.parametrize("variant", list(NUMPY_RETURNS))
def test_a_namedtuple_or_dict_subclass_of_the_right_answer_earns_its_points(grade, variant: str) -> None:
    from conftest import solution_cells

    wrapped = (
        "import collections\n_mlp_loss = mlp_loss\n"
        "def mlp_loss(X, y, params, reg):\n    out = _mlp_loss(X, y, params, reg)\n"
        f"    return {NUMPY_RETURNS[variant]}\n"
    )
    report = grade([*solution_cells(), wrapped])
    lost = [t["message"][:200] for t in report["tests"] if t["status"] != "passed"]
    assert report["score"] == report["max_score"], lost[:3]


# --------------------------------------------------------------------------- bindings: classes and methods

CLASS_ATTACKS = {  # appended after the correct TwoLayerNet (cs231n-two-layer): what the grader must survive
    "init-sleeps": "class TwoLayerNet(TwoLayerNet):\n    def __init__(self, *a, **k):\n        import time\n"
    "        time.sleep(3600)",
    "init-raises": "class TwoLayerNet(TwoLayerNet):\n    def __init__(self, *a, **k):\n        raise MemoryError('no')",
    "init-forks": "class TwoLayerNet(TwoLayerNet):\n    def __init__(self, *a, **k):\n        import os\n"
    "        os.fork()\n        super().__init__(*a, **k)",
    "del-loops": "class TwoLayerNet(TwoLayerNet):\n    def __del__(self):\n        while True:\n            pass",
    "params-setter-raises": "class TwoLayerNet(TwoLayerNet):\n    def __setattr__(self, name, value):\n"
    "        raise AttributeError(name)",
    "loss-is-a-generator": "class TwoLayerNet(TwoLayerNet):\n    def loss(self, X, y=None, reg=0.0):\n"
    "        yield from super().loss(X, y, reg)",
    "getattr-lies": "class TwoLayerNet:\n    def __init__(self, *a):\n        pass\n"
    "    def __getattr__(self, name):\n        return lambda *a, **k: (0.0, {})",
    "not-a-class": "TwoLayerNet = type('TwoLayerNet', (), {'__new__': lambda cls, *a: iter(range(10**12))})",
}


def test_constructors_and_methods_that_hang_raise_fork_or_lie_cost_only_their_points(grade) -> None:
    """A class binding builds a fresh instance per call: its constructor, finalizer, attribute protocol and method
    are the student's; whatever they do costs that submission's points, with a message, and no more."""
    from conftest import solution_sources

    correct = solution_sources("cs231n-two-layer", units=("TwoLayerNet",))["TwoLayerNet"]
    for name, attack in CLASS_ATTACKS.items():
        report = grade(["import numpy as np", correct, attack], assignment="cs231n-two-layer", name=name)
        failed = [t for t in report["tests"] if t["status"] != "passed"]
        assert report["score"] < report["max_score"] and failed, name
        assert all(t["message"] for t in failed), name
    report = grade(["import numpy as np", correct], assignment="cs231n-two-layer")
    assert report["score"] == report["max_score"]  # the same grader, after all of them


# --------------------------------------------------------------------------- handles: caches held in the worker

LAYER_UNITS = (
    "add_gate",
    "multiply_gate",
    "max_gate",
    "copy_gate",
    "sigmoid_dot",
    "affine_forward",
    "affine_backward",
    "relu_forward",
    "relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "softmax_loss",
    "two_layer_loss",
)
AFFINE, RELU = ("affine_forward", "affine_backward"), ("relu_forward", "relu_backward")
CACHE_ATTACKS = {  # appended after the correct layers: (code, the layers it touches, whether they keep full marks)
    "namedtuple-result-and-cache": (
        "import collections\nC = collections.namedtuple('C', 'x w b')\nR = collections.namedtuple('R', 'out cache')\n"
        "_af = affine_forward\ndef affine_forward(x, w, b):\n    out, cache = _af(x, w, b)\n"
        "    return R(out, C(*cache))\n"
        "def affine_backward(dout, cache):\n    x, w, b = cache.x, cache.w, cache.b\n"
        "    return (dout @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ dout, dout.sum(axis=0)",
        AFFINE,
        True,
    ),
    "generator-cache-used-once": (
        "def relu_forward(x):\n    return np.maximum(0, x), (v for v in [x])\n"
        "def relu_backward(dout, cache):\n    return dout * (next(cache) > 0)",
        RELU,
        True,
    ),
    "cache-is-the-input-mutated": (
        "_rf = relu_forward\ndef relu_forward(x):\n    out, cache = _rf(x)\n    cache *= -1\n    return out, cache\n",
        RELU,
        False,
    ),
    "forged-handle": (
        "import sys\ndef relu_forward(x):\n    H = sys.modules['_jitgrade_protocol'].Handle\n"
        "    return np.maximum(0, x), H(None, 0, 10**6)",
        RELU,
        False,
    ),
    "handle-as-a-value": (
        "import sys\n_rf = relu_forward\ndef relu_forward(x):\n    out, cache = _rf(x)\n"
        "    return sys.modules['_jitgrade_protocol'].Handle(None, 0, 1), cache",
        RELU,
        False,
    ),
}


@pytest.mark.parametrize("attack", list(CACHE_ATTACKS))
def test_hostile_caches_cost_only_their_layer(grade, attack: str) -> None:
    """A cache is the student's object, kept in the worker behind a handle: a namedtuple (a namedtuple result too:
    it used to be refused, costing a correct layer its points) or a generator used once works; a mutated input, a
    forged handle or a handle returned as a value costs that layer only; the other problems keep their points."""
    from conftest import solution_sources

    code, touched, full = CACHE_ATTACKS[attack]
    sources = solution_sources("layers", units=LAYER_UNITS)
    report = grade(["import numpy as np", *sources.values(), code], assignment="layers")
    assert report["error"] is None
    scores = {p["name"]: (p["score"], p["max_score"]) for p in report["problems"]}
    for name, (score, best) in scores.items():
        if name not in touched and not name.startswith("two_layer"):
            assert score == best, (name, score)
    lost = [n for n in touched if n in scores and scores[n][0] < scores[n][1]]
    assert not lost if full else lost, scores


# --------------------------------------------------------------------------- .py submissions: what the modules hold

SIGMOID = (PYDEMO / "solution" / "pf_sigmoid.py").read_bytes()
MODULE_ATTACKS = {  # what replaces (or is put before) pf_sigmoid.py -> whether its problem keeps its points
    "import-blocks-for-ever": (b"while True:\n    pass\n" + SIGMOID, True),  # stopped; its definitions replayed
    "import-forks": (b"import os\nos.fork()\n" + SIGMOID, False),  # seccomp refuses it: an OSError at import
    "nul-bytes": (b"x = 1\x00\n" + SIGMOID, False),
    "utf-16-with-bom": (SIGMOID.decode().encode("utf-16"), False),
    "a-line-of-900-kib": (b"# " + b"a" * (900 * 1024) + b"\n" + SIGMOID, True),
    "nesting-past-the-parser": (b"x = " + b"(" * 300 + b"1" + b")" * 300 + b"\n" + SIGMOID, False),
    "empties-the-import-system": (b"import sys\nsys.meta_path.clear()\nsys.modules.clear()\n" + SIGMOID, False),
    "is-a-folder": (b"", False),
}


@pytest.mark.parametrize("attack", list(MODULE_ATTACKS))
def test_hostile_module_code_costs_only_that_file(attack: str, zygote, tmp_path: Path) -> None:
    """Module-level code runs in the worker, each file as an import: one that blocks, forks, holds NUL bytes, is
    UTF-16, has an enormous line, nests past the parser, wrecks the import system or is a folder costs that
    file's problem at most, with a message; the grader grades the next submission as it would alone."""
    from conftest import FAST

    from grader.assignment import load
    from grader.grading import Grader

    data, keeps = MODULE_ATTACKS[attack]
    folder = tmp_path / "mal"
    folder.mkdir()
    (folder / "pf_softmax.py").write_bytes((PYDEMO / "solution" / "pf_softmax.py").read_bytes())
    if attack == "is-a-folder":
        (folder / "pf_sigmoid.py").mkdir()
        (folder / "pf_sigmoid.py" / "__init__.py").write_bytes(SIGMOID)
    else:
        (folder / "pf_sigmoid.py").write_bytes(data)
    grader = Grader(load(PYDEMO), FAST, 7, zygote=zygote)
    report = grader.grade_file(folder).result.to_dict()
    sigmoid = next(p for p in report["problems"] if p["name"] == "sigmoid")
    assert (sigmoid["score"] == sigmoid["max_score"]) is keeps, [t["message"][:200] for t in report["tests"]][:2]
    if not keeps:
        assert report["root_causes"] or report["error"], report["tests"][0]["message"]
    assert grader.grade_file(PYDEMO / "solution").result.to_dict()["score"] == 15


# --------------------------------------------------------------------------- similarity over a hostile class


def _notebook_of(*sources: str) -> str:
    notebook = json.loads(CORRECT.read_text())
    notebook["cells"] = [
        {"cell_type": "code", "id": f"h{i}", "metadata": {}, "outputs": [], "execution_count": None, "source": s}
        for i, s in enumerate(sources)
    ]
    return json.dumps(notebook)


SIMILARITY_CLASS = {  # file -> bytes, beside alice and her copy
    "many_cells.ipynb": _notebook_of(*(f"a{i} = {i}" for i in range(50_000))).encode(),
    "giant_cell.ipynb": _notebook_of("x = a + " * 200_000).encode(),
    "tokenizer.ipynb": _notebook_of("(" * 100_000, '"""' + "\n" * 100_000, "\\\n" * 100_000, "\x00" * 1000).encode(),
    "html.ipynb": _notebook_of("</pre></code></textarea><script>alert(1)</script>\nx = 1\n").encode(),
    "garbage.ipynb": bytes(range(256)) * 800,
    "deep.ipynb": b"[" * 100_000 + b"]" * 100_000,
    "<img src=x onerror=alert(2)>.ipynb": CORRECT.read_bytes(),
}


def test_similarity_of_a_hostile_class_finishes_and_escapes_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deeply nested, giant, garbage or tokenizer-hostile notebooks and HTML in code and names: the report for the
    whole class is written in seconds, the copied pair is found, and no tag a student wrote reaches the HTML."""
    import time

    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    for name in ("alice.ipynb", "alice_copy.ipynb"):
        (folder / name).write_bytes(CORRECT.read_bytes())
    for name, data in SIMILARITY_CLASS.items():
        (folder / name).write_bytes(data)
    started = time.monotonic()
    code = cli.main(["similarity", str(folder), "-a", "mlp", "--out", str(out), "--threshold", "0.1"])
    assert code == 0, capsys.readouterr().err
    assert time.monotonic() - started < 60
    rows = list(csv.DictReader(io.StringIO((out / "similarity.csv").read_text())))
    assert any({r["student"], r["other"]} == {"alice", "alice_copy"} and float(r["score"]) == 1 for r in rows)
    for page in [out / "similarity.html", *out.rglob("pair-*.html")]:
        html = page.read_text()
        assert "<script>alert" not in html and "<img src=x" not in html, page


# --------------------------------------------------------------------------- .py submissions: bombs


@pytest.mark.parametrize("form", ["zip", "folder"])
def test_many_large_files_are_refused_before_they_are_all_in_memory(form: str, tmp_path: Path) -> None:
    """200 files of almost 1 MiB each (a zip of 0.2 MiB; 10,000 of them, the entry limit, would be 10 GiB) used to
    be read whole into the grader's memory before the 2 MiB total was checked."""
    import tracemalloc

    from grader import pyfiles
    from grader.assignment import load

    files = {f"m{i}.py": b"#" * (pyfiles.MAX_FILE_BYTES - 10) for i in range(200)}
    files["pf_softmax.py"] = (PYDEMO / "solution" / "pf_softmax.py").read_bytes()
    if form == "zip":
        path = tmp_path / "bomb.zip"
        path.write_bytes(_zip_bytes(files))
    else:
        path = tmp_path / "bomb"
        path.mkdir()
        for name, data in files.items():
            (path / name).write_bytes(data)
    demo = load(PYDEMO)
    tracemalloc.start()
    try:
        with pytest.raises(pyfiles.PyFilesError, match="at most 2 MiB are graded"):
            pyfiles.read(path, demo)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB held to refuse it"


def _central_directory_only(entries: int) -> bytes:
    """A zip of `entries` one-letter members that has only its central directory (what zipfile reads on opening):
    47 bytes an entry."""
    entry = b"PK\x01\x02" + bytes([20, 3, 20, 0]) + bytes(20) + (1).to_bytes(2, "little") + bytes(16) + b"a"
    directory = entry * entries
    zip64 = (
        b"PK\x06\x06"
        + (44).to_bytes(8, "little")
        + bytes([45, 0, 45, 0])
        + bytes(8)
        + entries.to_bytes(8, "little") * 2
        + len(directory).to_bytes(8, "little")
        + bytes(8)
    )
    locator = b"PK\x06\x07" + bytes(4) + len(directory).to_bytes(8, "little") + (1).to_bytes(4, "little")
    end = b"PK\x05\x06" + bytes(4) + b"\xff\xff" * 2 + b"\xff" * 8 + bytes(2)
    return directory + zip64 + locator + end


def test_a_zip_of_a_million_entries_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    import tracemalloc

    from grader import pyfiles
    from grader.assignment import load

    path = tmp_path / "entries.zip"
    path.write_bytes(_central_directory_only(300_000))  # 14 MiB; the 64 MiB limit allows 1.4 million
    demo = load(PYDEMO)
    tracemalloc.start()
    try:
        with pytest.raises(pyfiles.PyFilesError, match="holds more than 10000 files and folders"):
            pyfiles.read(path, demo)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * 2**20, f"{peak / 2**20:.0f} MiB held to refuse it"


@pytest.mark.parametrize("python", [True, False])
def test_folders_nested_thousands_deep_never_stop_discovery(python: bool, tmp_path: Path) -> None:
    """A student's repository may nest folders 1,500 deep (git keeps them): looking for notebooks or .py files
    through it recursed past Python's limit and the RecursionError stopped the discovery of the whole class."""
    folder = tmp_path / "class"
    for student in ("zed", "mal"):
        (folder / student).mkdir(parents=True)
        for name in PYFILES:
            (folder / student / name).write_bytes((PYDEMO / "solution" / name).read_bytes())
        if not python:
            (folder / student / "mlp.ipynb").write_bytes(CORRECT.read_bytes())
    _nest(folder / "mal", 1500)
    try:
        kwargs = {"python": PYFILES} if python else {"preferred": "mlp.ipynb"}
        found = {s.student: s for s in discover([folder], workdir=tmp_path, **kwargs)}
        assert set(found) == {"zed", "mal"}
        for student, submission in found.items():
            assert task_of(student, submission).data is not None, student
    finally:
        _unnest(folder / "mal", 1500)  # shutil.rmtree (pytest's clean-up) recurses too


def _nest(folder: Path, depth: int) -> None:
    """Folders d/d/.../d `depth` deep under `folder`, a notebook at the bottom (made one at a time: past PATH_MAX)."""
    os.chdir(folder)
    try:
        for _ in range(depth):
            os.mkdir("d")
            os.chdir("d")
        Path("x.ipynb").write_text("{}")
    finally:
        os.chdir(ROOT)


def _unnest(folder: Path, depth: int) -> None:
    os.chdir(folder)
    try:
        for _ in range(depth):
            os.chdir("d")
        os.unlink("x.ipynb")
        for _ in range(depth):
            os.chdir("..")
            os.rmdir("d")
    finally:
        os.chdir(ROOT)


# --------------------------------------------------------------------------- CI logs: GitHub workflow commands


def _check_output(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The lines `jitgrade check --annotations github` prints for a .py submission (stdout and stderr)."""
    capsys.readouterr()
    args = ["check", str(path), "-a", str(PYDEMO), "--annotations", "github", "--isolation", "process", "--seed", "1"]
    cli.main([*args, "--cell-timeout", "3", "--call-timeout", "2"])
    said = capsys.readouterr()
    return (said.out + said.err).splitlines()


def _annotated(lines: list[str]) -> list[str]:
    """The workflow commands among the lines that jitgrade's annotation writer did not write."""
    return [
        line
        for line in lines
        if line.lstrip().startswith("::")
        and not line.startswith(("::error file=", "::notice file="))
        or line.startswith("::error file=x")
    ]


def test_a_file_name_never_becomes_a_workflow_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A member named "x\\n::error::injected.py" was named in a note printed raw: its second line was a GitHub
    Actions command in the CI log."""
    path = tmp_path / "mal.zip"
    path.write_bytes(_zip_bytes({**_solution_files(), "x\n::error::injected.py": b"1", "y\n::add-mask::z.ipynb": b""}))
    assert _annotated(_check_output(path, capsys)) == []


@pytest.mark.parametrize(
    "message",
    [
        "boom\\n::error file=x::owned\\n::add-mask::secret",  # lines of its own
        "boom\\n   ::error file=x::owned",  # after spaces
        "A" * 80 + "::error::owned",  # where the terminal's width (80 in CI) folds one long word
        "A" * 76 + " ::error::owned",  # ... or a line of words
    ],
)
def test_an_exception_message_never_becomes_a_workflow_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], message: str
) -> None:
    """A student's exception message printed by `jitgrade check` (root causes, check messages) had lines starting
    with '::': GitHub Actions workflow commands in the CI log."""
    path = tmp_path / "mal.zip"
    raising = f"raise ValueError('{message}')\n".encode()
    path.write_bytes(_zip_bytes(_solution_files(pf_softmax=raising)))
    assert _annotated(_check_output(path, capsys)) == []


def test_an_archive_of_past_repositories_nested_thousands_deep_is_still_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The archive holds past students' repositories as they were: one nested 1,500 folders deep stopped
    `jitgrade similarity --archive` with a RecursionError; links in it are not followed."""
    folder, archive, out = tmp_path / "class", tmp_path / "archive", tmp_path / "out"
    folder.mkdir()
    (folder / "alice.ipynb").write_bytes(CORRECT.read_bytes())
    (archive / "2023" / "carl").mkdir(parents=True)
    (archive / "2023" / "carl" / "mlp.ipynb").write_bytes(CORRECT.read_bytes())
    os.symlink(MASTER, archive / "2023" / "link.ipynb")
    (archive / "2023" / "deep").mkdir()
    _nest(archive / "2023" / "deep", 1500)
    try:
        code = cli.main(["similarity", str(folder), "-a", "mlp", "--out", str(out), "--archive", str(archive)])
    finally:
        _unnest(archive / "2023" / "deep", 1500)
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(io.StringIO((out / "similarity.csv").read_text())))
    others = {r["other"] for r in rows if r["student"] == "alice"}
    assert "2023/carl/mlp.ipynb" in others and "2023/link.ipynb" not in others, others


# --------------------------------------------------------------------------- another student's row


def test_a_folder_named_inside_a_students_zip_never_takes_another_students_id(tmp_path: Path) -> None:
    """`jitgrade grade eve.zip mallory.zip bob.zip`: eve's zip wraps her files in a folder named "bob", mallory's
    holds folders "bob" (wrong code) and "mallory". Each zip of one student is named by its file; a zip holding
    several folders is read as an export, but its "bob" never takes the id of the bob whose zip was given by name."""
    solution = {name: (PYDEMO / "solution" / name).read_bytes() for name in PYFILES}
    wrong = {name: b"def softmax(x):\n    return x\n" for name in PYFILES}
    (tmp_path / "eve.zip").write_bytes(_zip_bytes({f"bob/{n}": d for n, d in solution.items()}))
    (tmp_path / "mallory.zip").write_bytes(
        _zip_bytes({**{f"bob/{n}": d for n, d in wrong.items()}, **{f"mallory/{n}": d for n, d in solution.items()}})
    )
    (tmp_path / "bob.zip").write_bytes(_zip_bytes(solution))
    inputs = [tmp_path / name for name in ("eve.zip", "mallory.zip", "bob.zip")]
    found = {s.student: s for s in discover(inputs, workdir=tmp_path, python=PYFILES)}
    assert found["bob"].path == tmp_path / "bob.zip"
    assert found["eve"].path == tmp_path / "eve.zip"
    assert set(found) == {"bob", "eve", "mallory", "bob-2"}


# --------------------------------------------------------------------------- objects that lie about their type


@pytest.mark.parametrize("claimed", ["dict", "list", "tuple", "np.float64", "np.ndarray"])
def test_an_object_whose_class_lies_is_refused_by_the_channel_not_a_crash_of_the_worker(grade, claimed: str) -> None:
    """An object whose __class__ property claims to be a container, a NumPy scalar or an array (isinstance believes
    it) crashed the worker while it encoded the answer ("the worker itself failed"); it is a value that cannot be
    graded, said as such."""
    from conftest import solution_cells

    liar = (
        f"class Liar:\n    @property\n    def __class__(self):\n        return {claimed}\n"
        "    @property\n    def dtype(self):\n        raise RuntimeError('no dtype')\n"
        "    def __len__(self):\n        raise RuntimeError('no len')\n"
        "def softmax(x):\n    return Liar()\n"
    )
    report = grade([*solution_cells(), liar])
    messages = [t["message"] for t in report["tests"] if t["problem"] == "softmax" and t["status"] != "passed"]
    assert messages and all("cannot be graded" in m and "Liar" in m for m in messages[:3]), messages[:2]
    assert report["score"] == report["max_score"] - 10  # softmax's points only


def test_thousands_of_extra_files_beside_correct_ones_still_grade(zygote, tmp_path: Path) -> None:
    """Each file not graded was named in a note the loader cell carries; 9,990 long names beside 2 MiB of sources
    passed the 8 MiB request frame and the loader itself failed: the correct files scored 0 with a message about
    cell 0. The notes are bounded: the first few, then how many more."""
    from conftest import FAST

    from grader import pyfiles
    from grader.assignment import load
    from grader.grading import Grader

    padding = "# " + "\u0800" * (pyfiles.MAX_FILE_BYTES // 3 - 2000) + "\n"  # 3 bytes a character in UTF-8
    files = {
        "pf_softmax.py": (padding + (PYDEMO / "solution" / "pf_softmax.py").read_text()).encode(),
        "pf_sigmoid.py": (
            padding[: len(padding) // 2] + "\n" + (PYDEMO / "solution" / "pf_sigmoid.py").read_text()
        ).encode(),
        **{f"{i:05d}" + "\u2028" * 80 + ".py": b"" for i in range(9990)},
    }
    path = tmp_path / "many.zip"
    path.write_bytes(_zip_bytes(files))
    report = Grader(load(PYDEMO), FAST, 7, zygote=zygote).grade_file(path).result.to_dict()
    assert report["score"] == 15, [c["message"][:200] for c in report["root_causes"]]
    assert "and 9970 more files were not graded" in json.dumps(report)


def test_similarity_of_py_submissions_escapes_names_and_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """.py submissions compared (a folder, a zip): HTML in their code, in a student's folder name and in the name
    of a file they added never reaches the report as markup; the CSV neutralizes a formula in a name."""
    folder, out = tmp_path / "class", tmp_path / "out"
    script = "# </pre><script>alert(1)</script>\nS = '</textarea><img src=x onerror=alert(2)>'\n"
    for student in ("<img src=x onerror=alert(3)>", "=HYPERLINK(1)", "zed"):
        files = {name: script.encode() + data for name, data in _solution_files().items()}
        (folder / student).mkdir(parents=True)
        for name, data in {**files, "<script>alert(4)<\u2215script>.py": b"x = 1\n"}.items():
            (folder / student / name).write_bytes(data)
    (folder / "zip.zip").write_bytes(_zip_bytes({**_solution_files(), "<svg onload=alert(5)>.py": script.encode()}))
    code = cli.main(["similarity", str(folder), "-a", str(PYDEMO), "--out", str(out), "--threshold", "0.05"])
    assert code == 0, capsys.readouterr().err
    pages = [out / "similarity.html", *out.rglob("pair-*.html")]
    assert len(pages) > 1
    for page in pages:
        html = page.read_text()
        assert not any(tag in html for tag in ("<script>alert", "<img src=x", "<svg onload")), page
    assert (
        "\n=HYPERLINK" not in (out / "similarity.csv").read_text()
        and ",=HYPERLINK" not in (out / "similarity.csv").read_text()
    )
