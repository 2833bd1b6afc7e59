"""Guards on the shape of the code base (docs/layout.md): packages and their import rules,
no import cycle, short functions, a thin CLI, nothing pointing outside the repo."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PKG = ROOT / "aptviz"

# what each package may import (besides itself and the top-level leaf modules)
LEAVES = {"aptviz.errors", "aptviz._log", "aptviz._text", "aptviz._version"}
ALLOWED = {
    "compute": set(),
    "render": {"compute"},
    "output": {"compute"},
    "runs": {"compute", "render", "output", "pipeline"},
    "datasets": {"compute", "output", "runs", "pipeline"},
    "qwen2vl": {"compute"},
    "cli": {"compute", "render", "output", "runs", "datasets", "pipeline", "qwen2vl"},
    "pipeline": {"compute", "render", "output"},
}
#: calls that write a file; the rendering package makes pictures and pages in memory only
WRITERS = {"write_bytes", "write_text", "write_image", "write_bytes_atomic", "write_json_atomic", "savefig", "imwrite"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(path: Path, name: str) -> set[str]:
    """Every aptviz module imported anywhere in the file (function-level imports included)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("aptviz"):
                known = modules()
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("aptviz")}
    return found - {name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {t for t in imports_of(path, name) if t in mods} for name, path in mods.items()}


def area(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_layout_few_top_level_modules_and_documented_packages():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= 10, top
    packages = [p for p in PKG.iterdir() if (p / "__init__.py").is_file()]
    assert len(packages) >= 5
    for pkg in packages:
        doc = ast.get_docstring(ast.parse((pkg / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "May import" in doc, f"{pkg.name}/__init__.py must say what it is for and what it may import"


def test_packages_import_only_what_they_may():
    offenders = []
    for name, targets in graph().items():
        own = area(name)
        if own not in ALLOWED or own == "cli":
            continue
        for t in targets:
            if t in LEAVES or t == "aptviz" or area(t) == own:
                continue
            if area(t) not in ALLOWED[own]:
                offenders.append(f"{name} imports {t}")
    assert offenders == []


def test_nothing_imports_the_cli():
    offenders = [f"{n} imports {t}" for n, ts in graph().items() for t in ts if area(t) == "cli" and area(n) != "cli"]
    offenders = [o for o in offenders if not o.startswith("aptviz.__main__")]
    assert offenders == []


def test_no_import_cycle():
    g = graph()
    # a package's __init__ re-exporting its own modules is not a cycle between stages
    g = {n: {t for t in ts if not (n.count(".") == 1 and t.startswith(n + "."))} for n, ts in g.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for t in sorted(g.get(node, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[node] = 2

    for n in sorted(g):
        if n not in state:
            visit(n, [n])
    assert cycles == []


def test_rendering_writes_no_file():
    offenders = []
    for path in sorted((PKG / "render").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                fn = node.func
                called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
                mode = next((a.value for a in node.args[1:2] if isinstance(a, ast.Constant)), None)
                if called in WRITERS or (called == "open" and isinstance(mode, str) and set(mode) & set("wax")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {called}")
    assert offenders == []


def function_lengths(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


def test_no_function_over_80_lines_and_cli_functions_short():
    for path in sorted(PKG.rglob("*.py")):
        for name, length in function_lengths(path).items():
            limit = 60 if "cli" in path.relative_to(PKG).parts else 80
            assert length <= limit, f"{path.relative_to(ROOT)}:{name} is {length} lines (limit {limit})"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


_INVOKE = (
    "from typer.testing import CliRunner\nfrom aptviz.cli import app\n"
    "status = CliRunner().invoke(app, {argv!r}).exit_code\n"
)
_RUNPY = "import runpy, sys\nsys.argv = ['aptviz', *{argv!r}]\nrunpy.run_module('aptviz', run_name='__main__')\n"
_CHELSEA = "sample_images/chelsea.png"
#: Lazy heavy imports, all checked in ONE fresh interpreter (one start instead of one per case), in this order:
#: case -> (code run there, modules it must not import, file it must write under {tmp}). Each case is charged
#: with the modules that first appear while it runs, so the strictest cases (--help: not even NumPy) go first.
IMPORT_CASES = {
    "cli --help": (_INVOKE.format(argv=["--help"]), ("torch", "matplotlib", "transformers", "numpy"), None),
    "aptviz --help": (_RUNPY.format(argv=["--help"]), ("torch", "matplotlib", "transformers"), None),
    "import aptviz, packing, tokens": (
        "import numpy as np, aptviz\nfrom aptviz.compute.packing import pack_selection, normalize_pixels\n"
        "import aptviz.compute.tokens\n",
        ("torch", "transformers"),
        None,
    ),
    "importance on the CPU": (
        "import numpy as np\nfrom aptviz.compute.importance import compute_importance\n"
        "img = np.zeros((56, 84, 3), np.uint8)\n"
        "for m in ('laplacian', 'upsample-mse'):\n"
        "    for a in ('mean', 'max', 'std'):\n"
        "        compute_importance(img, m, a)\n",
        ("torch",),
        None,
    ),
    "aptviz.analyze": ("import aptviz\naptviz.analyze('sample_images/chelsea.png')\n", ("transformers",), None),
    "CPU run, no batch figures": (
        _RUNPY.format(argv=[_CHELSEA, "-o", "{tmp}/run", "-q"]),
        ("torch", "matplotlib", "transformers"),
        "run/chelsea/stats.json",
    ),
    "--export-tokens --device cpu": (
        _INVOKE.format(argv=[_CHELSEA, "-m", "budget:0.3", "--device", "cpu", "-o", "{tmp}/export", "-q",
                             "--export-tokens"]),
        ("torch", "transformers"),
        "export/chelsea/tokens.npz",
    ),  # fmt: skip
    # last: with a GPU, --device auto uses torch (this case is skipped there)
    "CPU run, --device auto": (
        _INVOKE.format(argv=[_CHELSEA, "-m", "v1", "-m", "budget", "-a", "0.3", "-o", "{tmp}/auto", "-q",
                             "--save-maps"]),
        ("torch",),
        "auto/chelsea/stats.json",
    ),  # fmt: skip
}
_HEAVY_WATCHED = sorted({m for _, mods, _ in IMPORT_CASES.values() for m in mods})
_IMPORT_SCRIPT = """
import json, sys
before = set()
for name, source in json.loads(sys.argv[1]):
    scope = {}
    try:
        exec(source, scope)
        status = scope.get("status", 0)
    except SystemExit as exc:
        status = exc.code or 0
    except BaseException as exc:
        status = f"{type(exc).__name__}: {exc}"
    now = {m for m in %r if m in sys.modules}
    print("CASE", json.dumps({"name": name, "status": status, "new": sorted(now - before)}), flush=True)
    before = now
"""


@pytest.fixture(scope="module")
def fresh_imports(tmp_path_factory) -> tuple[dict, Path, str]:
    """Every case of IMPORT_CASES run in order in one fresh interpreter: {case: its status and new modules}."""
    tmp = tmp_path_factory.mktemp("imports")
    cases = [(name, code.replace("{tmp}", str(tmp))) for name, (code, _, _) in IMPORT_CASES.items()]
    script = _IMPORT_SCRIPT % (_HEAVY_WATCHED,)
    import json

    out = subprocess.run([sys.executable, "-c", script, json.dumps(cases)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    found = {}
    for line in out.stdout.splitlines():
        if line.startswith("CASE "):
            case = json.loads(line[5:])
            found[case["name"]] = case
    return found, tmp, out.stdout[-2000:] + out.stderr[-2000:]


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(name, marks=pytest.mark.skipif(_cuda_available(), reason="a GPU is present: auto uses torch"))
        if "auto" in name
        else name
        for name in IMPORT_CASES
    ],
)
def test_cpu_command_imports_no_heavy_module(case, fresh_imports):
    """--help, a CPU run (no batch figures), --export-tokens, the CPU importance and the NumPy API import
    none of torch, matplotlib, transformers (--help: not even NumPy)."""
    found, tmp, output = fresh_imports
    assert case in found, output
    _, forbidden, written = IMPORT_CASES[case]
    assert found[case]["status"] == 0, (found[case], output)
    assert not set(found[case]["new"]) & set(forbidden), (found[case], output)
    if written:
        assert (tmp / written).is_file(), output


def test_no_tracked_file_points_outside_the_repo():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    needle = "shared" + "/"  # spelled apart so that this file does not match itself
    offenders = []
    for name in files:
        path = ROOT / name
        if path.suffix in {".py", ".md", ".sh", ".toml", ".txt", ".cfg", ".yml", ".yaml"} and path.is_file():
            if needle in path.read_text(encoding="utf-8", errors="replace"):
                offenders.append(name)
    assert offenders == []


# ---- render only draws (SPEC §15) ----------------------------------------------------------------------------


def _from_imports(path: Path, name: str):
    """``(line, absolute module, imported name)`` of every ``from ... import`` of an aptviz module in the file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target == "aptviz" or target.startswith("aptviz."):
                for alias in node.names:
                    yield node.lineno, target, alias.name


def _is_type_or_constant(module: str, name: str) -> bool:
    """A class (dataclass, enum, ...) or an UPPER_CASE constant; a function or a module is neither."""
    import importlib

    if name.isupper():
        return True
    try:
        obj = getattr(importlib.import_module(module), name)
    except AttributeError:  # a submodule
        return False
    return isinstance(obj, type)


def _render_trees():
    """``(module name, path, AST)`` of every module of ``aptviz.render``."""
    for name, path in modules().items():
        if area(name) == "render":
            yield name, path, ast.parse(path.read_text(encoding="utf-8"))


def test_render_imports_only_types_and_constants_from_compute():
    """Drawing takes plain data: from ``aptviz.compute`` it imports classes and constants, never a function."""
    offenders = []
    for name, path, tree in _render_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                compute = [a.name for a in node.names if a.name.startswith("aptviz.compute")]
                offenders += [f"{name}:{node.lineno} import {m}" for m in compute]
        for line, target, imported in _from_imports(path, name):
            from_compute = target == "aptviz.compute" or target.startswith("aptviz.compute.")
            if from_compute and not _is_type_or_constant(target, imported):
                offenders.append(f"{name}:{line} {target}.{imported}")
    assert not offenders, "\n".join(offenders)


def test_no_private_name_crosses_modules():
    """A name starting with ``_`` stays in its module: neither imported nor reached as ``module._name`` elsewhere."""
    offenders = []
    known = modules()
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_aliases = set()
        for line, target, imported in _from_imports(path, name):
            if imported.startswith("_") and not imported.startswith("__"):
                offenders.append(f"{name}:{line} imports {target}.{imported}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module_aliases |= {a.asname or a.name for a in node.names if f"{node.module}.{a.name}" in known}
            elif isinstance(node, ast.Import):
                module_aliases |= {a.asname or a.name for a in node.names if a.name.startswith("aptviz")}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases:
                if node.attr.startswith("_") and not node.attr.startswith("__"):
                    offenders.append(f"{name}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not offenders, "\n".join(offenders)


def test_render_never_converts_tensors():
    """``to_numpy`` is computing's: what render gets is NumPy already (the Analysis converts once)."""
    offenders = []
    for name, _, tree in _render_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                fn = node.func
                if (fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)) == "to_numpy":
                    offenders.append(f"{name}:{node.lineno}")
    assert not offenders, "\n".join(offenders)


# ----------------------------------------------------------------------------- one registry per extension point


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the docstring constants of a module, its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    for parent in ast.walk(tree):  # attribute docstrings: a string statement right after an assignment
        body = getattr(parent, "body", None)
        if isinstance(body, list):
            for prev, node in zip(body, body[1:]):
                if isinstance(prev, (ast.Assign, ast.AnnAssign)) and isinstance(node, ast.Expr):
                    if isinstance(node.value, ast.Constant):
                        found.add(id(node.value))
    return found


def names_measure_in_code(path: Path, name: str) -> bool:
    """Whether code (not a docstring, a doctest or a comment) names the measure as a value.

    Python: a string constant that is the name (``-`` or ``_``), or
    ``Measure.<member>``; JavaScript: the name in quotes. Prose that mentions
    a measure (help text, messages) is not counted.
    """
    import re

    member = name.replace("-", "_")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".js":
        return re.search(rf"[\"']{re.escape(name)}[\"']", text) is not None
    tree = ast.parse(text)
    docs = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in (name, member) and id(node) not in docs:
            return True
        if isinstance(node, ast.Attribute) and node.attr == member:
            if isinstance(node.value, ast.Name) and node.value.id == "Measure":
                return True
    return False


#: the default measure's name is also a stats.json key: the legacy ``"entropy"`` block, written and read there
STATS_JSON_KEY_FILES = {"aptviz/compute/stats.py", "aptviz/compute/heatmaps.py"}


def test_a_measure_is_named_in_at_most_three_files():
    """A measure is one MeasureSpec: only its entry, its code and its JavaScript twin name it (SPEC 15)."""
    from aptviz.compute.measures import DEFAULT_MEASURE, MEASURES

    files = sorted(PKG.rglob("*.py")) + sorted(PKG.rglob("*.js"))
    assert len(MEASURES) >= 3
    for spec in MEASURES:
        naming = {str(p.relative_to(ROOT)) for p in files if names_measure_in_code(p, spec.name)}
        if spec.name == DEFAULT_MEASURE:
            naming -= STATS_JSON_KEY_FILES
        assert "aptviz/compute/measures.py" in naming, spec.name
        assert len(naming) <= 3, (spec.name, sorted(naming))
