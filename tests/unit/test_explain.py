"""Provenance through oslo.config, multi-valued options, and secrets masking."""

from hvsupervisor.config.explain import effective, mask_text, mask_value
from hvsupervisor.config.plan import build_plan


def _exp(layout, section, option, agent="alpha"):
    s = layout.settings()
    return effective(build_plan(s, s.agents[agent])).explain(section, option)


def test_default_value_and_line(layout):
    e = _exp(layout, "DEFAULT", "debug")
    assert (e.value, e.file, e.line, e.source) == (
        "false", str(layout.defaults / "svc/svc.conf"), 2, "file")


def test_later_snippet_wins_and_is_named(layout):
    layout.write("defaults", "svc/svc.conf.d/50-a.conf", "[DEFAULT]\n\ndebug = maybe\n")
    p = layout.write("override", "svc/svc.conf.d/99-local.conf", "[DEFAULT]\n#c\n\ndebug = true\n")
    e = _exp(layout, "DEFAULT", "debug")
    assert (e.value, e.file, e.line) == ("true", str(p), 4)
    assert len(e.contributors) == 3


def test_unset_option(layout):
    e = _exp(layout, "DEFAULT", "nothing_here")
    assert (e.value, e.file, e.source) == (None, None, "unset")


def test_interpolation_like_oslo(layout):
    layout.write("override", "svc/svc.conf.d/10-p.conf",
                 "[DEFAULT]\nstate_path = /srv/x\nlock_path = $state_path/lock\n")
    assert _exp(layout, "DEFAULT", "lock_path").value == "/srv/x/lock"


def test_multi_valued_option_lists_every_contributor(layout):
    a = layout.write("defaults", "svc/svc.conf.d/10-a.conf", '[pci]\nalias = {"name": "a"}\n')
    b = layout.write("override", "svc/svc.conf.d/20-b.conf", '[pci]\nalias = {"name": "b"}\n')
    e = _exp(layout, "pci", "alias")
    assert e.value == '{"name": "a"}\n{"name": "b"}'
    assert [f for f, _ in e.contributors] == [str(a), str(b)]


def test_environment_from_plan_beats_files(layout):
    cat = layout.defaults / "hvsupervisor.conf"
    cat.write_text(cat.read_text().replace(
        "ready = alive:1", "ready = alive:1\nenvironment = OS_DEFAULT__DEBUG:true"))
    e = _exp(layout, "DEFAULT", "debug")
    assert (e.value, e.source, e.file) == ("true", "environment", None)


def test_section_names_case_insensitive_like_oslo(layout):
    layout.write("override", "svc/svc.conf.d/10-a.conf", "[AGENT]\nroot_helper = x\n")
    assert _exp(layout, "agent", "root_helper").value == "x"


def test_masking():
    url = "rabbit://nova:s3cr3t@10.0.0.1:5672,nova:other@10.0.0.2:5672/"
    assert mask_text(url) == "rabbit://nova:****@10.0.0.1:5672,nova:****@10.0.0.2:5672/"
    assert mask_value("connection", "mysql+pymysql://nova:pw@db/nova") == (
        "mysql+pymysql://nova:****@db/nova")
    assert mask_value("password", "hunter2") == "****"
    assert mask_value("metadata_proxy_shared_secret", "abc") == "****"
    assert mask_value("debug", "true") == "true"
