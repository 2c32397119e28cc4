"""The package's imports form no cycle and point one way (cli → export → render → views → result).

Every import counts: at module level, inside functions, and under TYPE_CHECKING. The
graph is read from the source with `ast`, so nothing runs. The second half runs the real
CLI and reads what it imported: the embedded model on the CPU never loads torch.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "attnviz"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `name` imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from . import views` imports the module attnviz.views
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


# AttentionResult._repr_html_ (the notebook display hook) lazily imports the viewer: the one
# arrow that points up, on purpose, so a result shows itself in a notebook with no extra call
ALLOWED_UP = {("attnviz.result", "attnviz.render.html")}


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges = {name: imports(name, path, set(mods)) for name, path in mods.items()}
    for a, b in ALLOWED_UP:
        assert b in edges[a], f"{a} no longer imports {b}: drop it from ALLOWED_UP"
        edges[a].discard(b)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_correctly():
    edges = graph()
    assert "attnviz.views" in edges["attnviz.cli.output"]  # an import inside a function
    assert "attnviz.backends.native_bert" in edges["attnviz.backends.registry"]
    assert "attnviz.views" in edges["attnviz"]  # the lazy public API
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_anywhere_in_the_package():
    assert cycles(graph()) == []


def test_arrows_point_down():
    edges = graph()
    layers = {  # a module may import only from its own layer or those below
        "attnviz.cli": 5,
        "attnviz.export": 4,
        "attnviz.render": 3,
        "attnviz.api": 3,
        "attnviz.explain": 3,
        "attnviz.backends": 2,
        "attnviz.inputs": 2,
        "attnviz.views": 2,
        "attnviz.saved": 2,
        "attnviz.scratch": 1,
        "attnviz.result": 1,
        "attnviz.spec": 0,
        "attnviz.errors": 0,
    }

    def layer(module: str) -> int | None:
        for prefix, rank in sorted(layers.items(), key=lambda kv: -len(kv[0])):
            if module == prefix or module.startswith(prefix + "."):
                return rank
        return None

    upward = [
        (a, b)
        for a, targets in edges.items()
        for b in targets
        if layer(a) is not None and layer(b) is not None and layer(b) > layer(a)  # type: ignore[operator]
    ]
    assert upward == []
    backends = [m for m in edges if m.startswith("attnviz.backends.") and m != "attnviz.backends.registry"]
    assert all("attnviz.backends.registry" not in edges[m] for m in backends)  # the registry is not imported back


# ---------------------------------------------------------------- what the real CLI imports

HEAVY = ("torch", "transformers")


def imported(args: list[str], stdin: str | None = None) -> set[str]:
    """Every module a real `python -m attnviz ARGS` imports, read from `-X importtime` (stderr)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "attnviz", *args],
        input=(stdin or "").encode(),
        capture_output=True,  # stdout may be binary (npz)
        timeout=120,
    )
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("import time:")]
    assert len(lines) > 50  # importtime did report: an empty list would pass any check below
    return {line.rsplit("|", 1)[1].strip() for line in lines}


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A json and an npz file written by `attnviz show`."""
    folder = tmp_path_factory.mktemp("saved")
    for fmt in ("json", "npz"):
        out = subprocess.run(
            [sys.executable, "-m", "attnviz", "show", "I have a dream", "-f", fmt, "--layer", "all"],
            capture_output=True,
            check=True,
        )
        (folder / f"dream.{fmt}").write_bytes(out.stdout)
    return folder


@pytest.mark.parametrize(
    "args",
    [
        ["show", "I have a dream"],
        ["show", "I have a dream", "--pair", "so do I", "--layer", "0", "--head", "3"],
        ["show", "I have a dream", "-f", "json", "--layer", "all", "--head", "all"],
        ["show", "I have a dream", "-f", "npz"],
        ["show", "-", "-f", "jsonl"],
        ["show", "I have a dream", "-f", "csv", "--agg", "rollout"],
        ["heads", "I have a dream"],
        ["heads", "--probe", "induction", "--probe-length", "8", "-f", "json"],
        ["tokens", "I have a dream", "--pair", "so do I"],
        ["tokens", "I have a dream", "--device", "cuda"],  # tokenizing runs no model: any device will do
        ["tokens", "I have a dream", "--model", "scratch", "--source", "so do I"],  # its word tokenizer alone
        ["info"],
    ],
    ids=lambda a: " ".join(a[:4]),
)
def test_the_embedded_model_on_the_cpu_and_tokens_never_import_torch(args):
    modules = imported(args, stdin="I have a dream\nso do I\n")
    assert "attnviz.backends.native_bert" in modules or args[0] == "tokens"
    assert heavy(modules) == []


@pytest.mark.parametrize("name", ["dream.json", "dream.npz"])
def test_render_of_a_saved_file_never_imports_torch(saved, name):
    for fmt in ("table", "json"):
        assert heavy(imported(["render", str(saved / name), "-f", fmt])) == []


def test_the_check_sees_torch_where_it_is_imported():
    """The same check on a path that does use torch (--dtype bfloat16 runs on transformers)."""
    modules = imported(["show", "I have a dream", "--dtype", "bfloat16", "--layer", "0", "--head", "0"])
    assert "torch" in heavy(modules) and "attnviz.backends.hf" in modules


def test_the_python_api_on_the_embedded_model_never_imports_torch():
    code = "import json, sys, attnviz; attnviz.extract('I have a dream'); print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    modules = set(json.loads(out.stdout))
    assert "attnviz.backends.native_bert" in modules and heavy(modules) == []
