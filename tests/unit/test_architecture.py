"""The import rules of doc/architecture.md, checked on the source.

Imports inside functions count too: a lazy import hides a cycle from the
interpreter, not from the next reader.
"""

from __future__ import annotations

import ast
import pathlib
import sys

import hvsupervisor

ROOT = pathlib.Path(hvsupervisor.__file__).parent

# The layers of doc/architecture.md, by folder. Every module is in exactly one.
CORE = ("hvsupervisor.core",)        # pure decisions: stdlib only, imports only itself
CONFIG = ("hvsupervisor.config",)    # the pure config layer: core, itself, oslo.config
SHELL = ("hvsupervisor.process", "hvsupervisor.host", "hvsupervisor.systemd",
         "hvsupervisor.health", "hvsupervisor.privsep", "hvsupervisor.control",
         "hvsupervisor.supervisor", "hvsupervisor.agents", "hvsupervisor.release")
CMD = ("hvsupervisor.cmd",)
TOP = ("hvsupervisor", "hvsupervisor.__main__")  # the version, ``python -m hvsupervisor``
# Third-party packages the config layer may use: oslo.config (its parser and
# types) and oslo.log, for its option declarations only (settings.py registers
# [DEFAULT] debug, log_file... so our own file validates them).
CONFIG_THIRD_PARTY = {"oslo_config", "oslo_log"}


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


def _all_imports(path: pathlib.Path) -> set[str]:
    """Every module name ``path`` imports, anywhere in the file (absolute imports)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _imports(name: str, path: pathlib.Path) -> set[str]:
    """The hvsupervisor modules ``name`` imports, anywhere in the file."""
    return {t for t in _all_imports(path) if t in MODULES and t != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _in(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _layer(name: str) -> str:
    for layer, prefixes in (("core", CORE), ("config", CONFIG), ("shell", SHELL),
                            ("cmd", CMD)):
        if _in(name, prefixes):
            return layer
    return "top" if name in TOP else "none"


def test_every_module_is_in_a_layer_and_the_top_holds_only_init_and_main():
    assert sorted(n for n in MODULES if _layer(n) == "none") == []
    top = sorted(p.name for p in ROOT.iterdir() if p.suffix == ".py")
    assert top == ["__init__.py", "__main__.py"]


def test_no_two_modules_share_a_basename():
    """In a traceback or a grep, a file name names one module."""
    seen: dict[str, list[str]] = {}
    for path in ROOT.rglob("*.py"):
        if path.name not in ("__init__.py", "__main__.py"):
            seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {k: v for k, v in seen.items() if len(v) > 1} == {}


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
    offenders = {n: sorted(d for d in deps if _in(d, CMD))
                 for n, deps in GRAPH.items() if _layer(n) not in ("cmd", "top")}
    assert {n: d for n, d in offenders.items() if d} == {}


def _outside(layer: str, internal: tuple[str, ...], third_party: set[str]) -> dict:
    """Per module of ``layer``: what it imports beyond ``internal`` hvsupervisor
    folders, the standard library and ``third_party``."""
    offenders = {}
    for name, path in MODULES.items():
        if _layer(name) != layer:
            continue
        bad = sorted(t for t in _all_imports(path)
                     if (t in MODULES and not _in(t, internal))
                     or t.split(".")[0] not in (*sys.stdlib_module_names, "hvsupervisor",
                                                "__future__", *third_party))
        if bad:
            offenders[name] = bad
    return offenders


def test_the_pure_core_imports_only_itself_and_the_standard_library():
    assert _outside("core", CORE, set()) == {}


def test_the_config_layer_imports_the_core_itself_and_oslo_config_only():
    """In particular no host lookups: they come in as HostFacts (config/host_facts.py)."""
    assert _outside("config", CORE + CONFIG, CONFIG_THIRD_PARTY) == {}


def test_the_config_layer_asks_the_host_nothing():
    """No passwd/group lookups, no PATH search, no journal socket stat in config/."""
    banned = {"pwd", "grp", "shutil"}
    offenders = {n: sorted(banned & {t.split(".")[0] for t in _all_imports(p)})
                 for n, p in MODULES.items() if _layer(n) == "config"}
    assert {n: b for n, b in offenders.items() if b} == {}


def test_the_shell_imports_no_cmd_and_only_control_and_cmd_import_the_supervisor():
    allowed = ("hvsupervisor.supervisor", "hvsupervisor.control") + CMD
    offenders = sorted(n for n, deps in GRAPH.items()
                       if not _in(n, allowed) and any(_in(d, ("hvsupervisor.supervisor",))
                                                      for d in deps))
    assert offenders == []


def test_only_the_demo_verb_imports_the_test_cloud():
    """The test cloud is its own distribution (testcloud/), not in a node's install."""
    users = sorted(n for n, p in MODULES.items()
                   if any(t.split(".")[0] == "hvtestcloud" for t in _all_imports(p)))
    assert users == ["hvsupervisor.cmd.demo"]


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
