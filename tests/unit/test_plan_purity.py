"""The plan is pure: it builds from config files and HostFacts, and asks the host nothing.

Every shipped plan is built here from hand-written facts (agents as nova and
neutron, no journal, commands in a bin dir that does not exist) while passwd,
group, PATH lookups, the journal socket and every file outside the config dirs
raise. The config files are the plan's input, so reads under the defaults and
override dirs are allowed, and nothing else is.
"""

from __future__ import annotations

import builtins
import grp
import os
import pwd
import shutil
from pathlib import Path

import pytest

from hvsupervisor.config.host_facts import HostFacts, Identity, user_key
from hvsupervisor.config.plan import build_plans
from hvsupervisor.config.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
ETC = REPO / "etc"

NOVA = Identity("nova", 64901, "nova", 64901, (64903, 64904), "/var/lib/nova",
                ("openvswitch", "libvirt"))
NEUTRON = Identity("neutron", 64902, "neutron", 64902, (64903,), "/var/lib/neutron",
                   ("openvswitch",))


def _facts(settings) -> HostFacts:
    identities = {}
    for spec in settings.agents.values():
        if spec.user:
            ident = {"nova": NOVA, "neutron": NEUTRON}[spec.user]
            identities[user_key(spec.user, spec.group, spec.supplementary_groups)] = ident
    return HostFacts(journal=True, bindir=Path("/nonexistent/bin"),
                     commands={"nova-compute": "/opt/x/bin/nova-compute"},
                     identities=identities)


def _host_out_of_reach(monkeypatch, tmp_path):
    """Make every host lookup but the config dirs' reads fail loudly."""
    allowed = (str(ETC), str(tmp_path / "override"))
    touched: list[str] = []

    def guard(name, real):
        def wrapper(path, *a, **kw):
            p = os.fspath(path) if not isinstance(path, int) else ""
            if isinstance(path, int) or p.startswith(allowed):
                return real(path, *a, **kw)
            touched.append(f"{name}({p})")
            raise AssertionError(f"the plan touched the host: {name}({p})")
        return wrapper

    def refuse(what):
        def wrapper(*a, **kw):
            touched.append(what)
            raise AssertionError(f"the plan asked the host: {what}{a}")
        return wrapper

    for mod, name in ((builtins, "open"), (os, "stat"), (os, "lstat"), (os, "scandir"),
                      (os, "listdir"), (os, "access")):
        monkeypatch.setattr(mod, name, guard(name, getattr(mod, name)))
    for mod, name in ((pwd, "getpwnam"), (pwd, "getpwuid"), (grp, "getgrnam"),
                      (grp, "getgrgid"), (os, "getgrouplist"), (shutil, "which")):
        monkeypatch.setattr(mod, name, refuse(f"{mod.__name__}.{name}"))
    return touched


def test_every_shipped_plan_builds_from_facts_alone(tmp_path, monkeypatch):
    settings = load_settings(ETC, tmp_path / "override", str(tmp_path / "state"),
                             str(tmp_path / "log"), str(tmp_path / "run"))
    facts = _facts(settings)
    with monkeypatch.context() as m:
        touched = _host_out_of_reach(m, tmp_path)
        plans = build_plans(settings, facts)
    assert touched == []
    assert set(plans) == set(settings.enabled_agents) and len(plans) == 6
    # The facts, and only they, decided the host-dependent parts:
    assert plans["nova-compute"].argv[0] == "/opt/x/bin/nova-compute"
    assert plans["neutron-l3-agent"].argv[0] == "neutron-l3-agent"  # not looked up: stays bare
    assert plans["nova-compute"].identity == NOVA
    assert plans["neutron-dhcp-agent"].identity == NEUTRON
    assert all("/nonexistent/bin/hvsupervisor-privsep" in v
               for k, v in plans["neutron-dhcp-agent"].env.items() if k.endswith("_COMMAND"))


def test_the_journal_fact_reaches_the_plan_and_its_digest(tmp_path):
    settings = load_settings(ETC, tmp_path / "override", str(tmp_path / "state"),
                             str(tmp_path / "log"), str(tmp_path / "run"))
    facts = _facts(settings)
    with_journal = build_plans(settings, facts)
    without = build_plans(settings, HostFacts(False, facts.bindir, facts.commands,
                                              facts.identities))
    for name in with_journal:
        assert with_journal[name].digest != without[name].digest, name


def test_a_user_the_host_lacks_is_a_config_error_at_the_catalog_line(tmp_path):
    from hvsupervisor.config.errors import ConfigError

    settings = load_settings(ETC, tmp_path / "override", str(tmp_path / "state"),
                             str(tmp_path / "log"), str(tmp_path / "run"))
    facts = _facts(settings)
    missing = {k: ("user 'neutron' does not exist on this host" if k[0] == "neutron" else v)
               for k, v in facts.identities.items()}
    with pytest.raises(ConfigError) as err:
        build_plans(settings, HostFacts(True, facts.bindir, facts.commands, missing))
    assert "does not exist on this host" in str(err.value)
    assert "hvsupervisor.conf" in str(err.value) and ":" in str(err.value)


def test_the_guard_catches_the_shell_path(tmp_path, monkeypatch):
    """The same guard around host/facts.py's gather + build fails: the guard is real."""
    from hvsupervisor.host.facts import plans_for

    settings = load_settings(ETC, tmp_path / "override", str(tmp_path / "state"),
                             str(tmp_path / "log"), str(tmp_path / "run"))
    with monkeypatch.context() as m:
        touched = _host_out_of_reach(m, tmp_path)
        with pytest.raises(AssertionError, match="touched the host|asked the host"):
            plans_for(settings)
    assert touched
