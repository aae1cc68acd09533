"""Issue 10 section 5: conf.d selection is oslo.config's --config-dir rule, exactly,
in plan (and so reload, which builds plans) and in check."""

import os

import pytest
from oslo_config import cfg

from hvsupervisor.config import layers
from hvsupervisor.config.errors import ConfigError
from hvsupervisor.host import preflight
from hvsupervisor.host.facts import plan_for

NAMES = ["10-a.conf", ".30-c.conf", "20-b.conf~", "40-d.ini", "50-E.CONF", "60-f.conf",
         "README", ".hidden", "70 space.conf"]


def _fill(d):
    for name in NAMES:
        (d / name).write_text(f"[DEFAULT]\nseen = {name}\n")
    os.symlink("/nonexistent/target", d / ".#50-site.conf")  # an editor's lock link


def _oslo_reads(d) -> list[str]:
    """Ask oslo.config itself which files --config-dir parses, in order."""
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.MultiStrOpt("seen"))
    conf(args=["--config-dir", str(d)], default_config_files=[], default_config_dirs=[],
         use_env=False)
    return list(conf.seen)


def test_selection_equals_oslo_config_dir(tmp_path):
    _fill(tmp_path)
    ours = sorted(n for n in os.listdir(tmp_path) if layers.oslo_selects(n))
    assert ours == _oslo_reads(tmp_path) == ["10-a.conf", "60-f.conf", "70 space.conf"]


def test_plan_skips_dotfiles_and_check_names_them(layout):
    d = layout.override / "svc/svc.conf.d"
    d.mkdir(parents=True)
    _fill(d)
    s = layout.settings()
    plan = plan_for(s, s.agents["alpha"])
    in_argv = [os.path.basename(a) for a in plan.argv if str(d) in a]
    assert in_argv == ["10-a.conf", "60-f.conf", "70 space.conf"]
    assert ".30-c.conf" not in " ".join(plan.argv)
    ignored = {r.detail.split(" is ignored")[0] for r in preflight.check_confd(str(d))}
    assert str(d / ".30-c.conf") in ignored and str(d / ".#50-site.conf") in ignored
    assert not any(n in {os.path.basename(i) for i in ignored} for n in in_argv)


def test_dangling_lock_link_does_not_break_settings(layout):
    d = layout.override / "hvsupervisor.conf.d"
    d.mkdir(parents=True)
    os.symlink("root@host.1234:1700000000", d / ".#50-site.conf")
    assert layout.settings().enabled_agents == ["alpha", "beta"]


def test_dangling_selected_link_is_refused_like_oslo(layout, tmp_path):
    d = layout.override / "svc/svc.conf.d"
    d.mkdir(parents=True)
    os.symlink("/nonexistent/target", d / "50-site.conf")
    with pytest.raises(cfg.ConfigFilesNotFoundError):
        _oslo_reads(d)
    s = layout.settings()
    with pytest.raises(ConfigError) as err:
        plan_for(s, s.agents["alpha"])
    assert err.value.path == str(d / "50-site.conf")
