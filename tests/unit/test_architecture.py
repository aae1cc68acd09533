"""The import rules of doc/architecture.md, checked on the source.

Imports inside functions count too: a lazy import hides a cycle from the
interpreter, not from the next reader.
"""

from __future__ import annotations

import ast
import pathlib

import hvsupervisor

ROOT = pathlib.Path(hvsupervisor.__file__).parent

# The pure core: decisions without effects. It may import only itself.
CORE = ("hvsupervisor.core.lifecycle", "hvsupervisor.core.restart_policy", "hvsupervisor.core.deps",
        "hvsupervisor.core.status_line", "hvsupervisor.core")


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: pathlib.Path) -> set[str]:
    """The hvsupervisor modules ``name`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES
                       else node.module for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _in(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                cycle = trail[trail.index(dep):] + [dep] if dep in trail else [node, dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, trail + [dep])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def test_nothing_outside_cmd_imports_cmd():
    offenders = {n: sorted(d for d in deps if _in(d, ("hvsupervisor.cmd",)))
                 for n, deps in GRAPH.items()
                 if not _in(n, ("hvsupervisor.cmd", "hvsupervisor.__main__"))}
    assert {n: d for n, d in offenders.items() if d} == {}


def test_the_pure_core_imports_only_itself():
    offenders = {n: sorted(d for d in deps if not _in(d, CORE))
                 for n, deps in GRAPH.items() if _in(n, CORE)}
    assert {n: d for n, d in offenders.items() if d} == {}


def test_only_the_shell_and_cmd_import_the_supervisor():
    allowed = ("hvsupervisor.supervisor", "hvsupervisor.control", "hvsupervisor.cmd")
    offenders = sorted(n for n, deps in GRAPH.items()
                       if not _in(n, allowed) and any(_in(d, ("hvsupervisor.supervisor",))
                                                      for d in deps))
    assert offenders == []


def test_status_needs_neither_oslo_config_nor_oslo_log(layout):
    """``hvsupervisor status`` must answer fast (benchmarks/cli_latency.py): oslo.config's
    option registry and oslo.log cost more than the whole answer, and it needs
    neither (its INI parser, oslo_config.iniparser, is cheap and allowed)."""
    import subprocess
    import sys

    code = ("import sys\nfrom hvsupervisor.cmd.cli import main\n"
            f"rc = main({layout.cli() + ['status']!r})\n"
            "print(rc, sorted(m for m in sys.modules if m.startswith('oslo_log')"
            " or m == 'oslo_config.cfg'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split(None, 1) == ["1", "[]\n"], out.stdout + out.stderr
    assert "no supervisor is listening on" in out.stderr
