"""Provenance through oslo.config, multi-valued options, and secrets masking."""

from hvsupervisor.config.explain import effective, mask_text, mask_value
from hvsupervisor.host.facts import plan_for


def _exp(layout, section, option, agent="alpha"):
    s = layout.settings()
    return effective(plan_for(s, s.agents[agent])).explain(section, option)


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
    # The catalog line that put OS_DEFAULT__DEBUG into the plan is named.
    line = cat.read_text().splitlines().index("environment = OS_DEFAULT__DEBUG:true") + 1
    assert (e.value, e.source, e.file, e.line) == ("true", "environment", str(cat), line)


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


def test_oslo_get_location_names_the_last_parsed_file_we_do_not(layout):
    """oslo.config 10.7's get_location() names the last parsed file, not the one
    that set the value: the library's wrong answer, and our parse's right one."""
    base = layout.defaults / "svc/svc.conf"
    base.write_text("[DEFAULT]\n\nb = one\n")
    last = layout.write("override", "svc/svc.conf.d/90-other.conf", "[DEFAULT]\nc = two\n")
    s = layout.settings()
    eff = effective(plan_for(s, s.agents["beta"]))
    assert eff.conf.get_location("b").detail == str(last)  # oslo: wrong file
    e = eff.explain("DEFAULT", "b")
    assert (e.value, e.file, e.line) == ("one", str(base), 3)


def test_value_in_override_that_replaces_a_default(layout):
    layout.write("defaults", "svc/svc.conf", "[DEFAULT]\ndebug = false\nx = 1\n")
    over = layout.write("override", "svc/svc.conf", "[DEFAULT]\n#\n#\ndebug = true\n")
    layout.write("defaults", "svc/svc.conf.d/50-z.conf", "[other]\ny = 2\n")
    e = _exp(layout, "DEFAULT", "debug")
    assert (e.value, e.file, e.line) == ("true", str(over), 4)
    assert _exp(layout, "DEFAULT", "x").source == "unset"  # replaced whole, not merged


def test_value_beside_a_masked_snippet(layout):
    layout.write("defaults", "svc/svc.conf.d/50-site.conf", "[DEFAULT]\ndebug = masked\n")
    layout.write("override", "svc/svc.conf.d/50-site.conf", "")  # masks it
    later = layout.write("defaults", "svc/svc.conf.d/60-later.conf", "[x]\ny = 1\n")
    e = _exp(layout, "DEFAULT", "debug")
    assert (e.value, e.file, e.line) == ("false", str(layout.defaults / "svc/svc.conf"), 2)
    assert str(later) != e.file


def test_winner_in_a_middle_snippet(layout):
    mid = layout.write("defaults", "svc/svc.conf.d/50-a.conf", "[DEFAULT]\n\ndebug = mid\n")
    layout.write("override", "svc/svc.conf.d/90-b.conf", "[DEFAULT]\nother = 1\n")
    e = _exp(layout, "DEFAULT", "debug")
    assert (e.value, e.file, e.line) == ("mid", str(mid), 3)
