"""Guards on the shape of the code base: short functions, a thin CLI, nothing pointing outside the repo."""

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def function_lengths(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


def test_no_function_over_100_lines_and_cli_functions_short():
    for path in sorted((ROOT / "aptviz").glob("*.py")):
        for name, length in function_lengths(path).items():
            limit = 60 if path.name.startswith("cli") else 100
            assert length <= limit, f"{path.name}:{name} is {length} lines (limit {limit})"


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
