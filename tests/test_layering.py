"""The house's floors: imports run analyses -> interventions -> mdm_lens, and no modules import each other in
a loop. Read from the source (ast), function-local imports and importlib.import_module("...") strings included,
so a lazy or dynamic import cannot hide an upward step."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"mdm_lens": 1, "interventions": 2, "analyses": 3}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in FLOORS:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every project module `name` imports: `import a.b`, `from .x import y` (y a submodule or a name),
    `importlib.import_module("a.b")` and `__import__("a.b")`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in known else base)
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            fn = node.func
            called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if called in ("import_module", "__import__"):
                found.add(node.args[0].value)
    resolved = set()
    for mod in found:  # `import a.b.c` names a.b.c; keep the longest known prefix
        parts = mod.split(".")
        while parts and ".".join(parts) not in known:
            parts.pop()
        if parts and ".".join(parts) != name:
            resolved.add(".".join(parts))
    return resolved


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def test_the_reader_sees_lazy_and_dynamic_imports(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text(
        "import importlib\nfrom . import sib\nfrom .pkg import thing\n\n\ndef f():\n"
        "    import mdm_lens.hooked\n    importlib.import_module('analyses.cli')\n"
        "    return __import__('interventions')\n"
    )
    known = {"analyses.mod", "analyses.sib", "analyses.pkg", "analyses.cli", "mdm_lens.hooked", "interventions"}
    assert _imports("analyses.mod", src, known) == known - {"analyses.mod"}
    g = _graph()
    assert "interventions.io" in g["interventions.plan"] and "mdm_lens.protocols" in g["interventions.plan"]


def test_no_upward_import():
    bad = [
        f"{m} -> {d}" for m, deps in _graph().items() for d in deps if FLOORS[d.split(".")[0]] > FLOORS[m.split(".")[0]]
    ]
    assert not bad, "imports must run analyses -> interventions -> mdm_lens; upward: " + ", ".join(sorted(bad))


def test_no_import_cycle():
    g = _graph()
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not cycles, f"modules that import each other in a loop: {cycles}"


def test_nothing_in_production_imports_the_test_helpers():
    """`mdm_lens.testing` serves tests and users' tests; the library, benchmarks and studies take tiny configs
    from the family specs (`mdm_lens.families.tiny_config`)."""
    users = sorted(m for m, deps in _graph().items() if "mdm_lens.testing" in deps and m != "mdm_lens.testing")
    assert not users, f"production modules import mdm_lens.testing: {users}"
