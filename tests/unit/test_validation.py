"""Issue 10 section 2: what validates is what runs. Bounds live in the option
types (config/types.py), agent names follow one grammar (opts.AGENT_NAME), and
unknown keys are reported with file:line. Each case here was accepted before."""

import pytest

from hvsupervisor.config.errors import ConfigError
from hvsupervisor.core.restart_policy import RestartPolicy
from hvsupervisor.host.facts import plans_for
from hvsupervisor.supervisor.agent import restart_policy as _policy


def _load(layout, text, rel="hvsupervisor.conf.d/90-x.conf"):
    p = layout.write("override", rel, text)
    return p, layout.settings()


def _refused(layout, text):
    p = layout.write("override", "hvsupervisor.conf.d/90-x.conf", text)
    with pytest.raises(ConfigError) as err:
        plans_for(layout.settings())
    return p, err.value


@pytest.mark.parametrize("section,line", [
    ("[supervisor]", "flap_window = 0"),
    ("[supervisor]", "restart_jitter = 1.5"),
    ("[supervisor]", "restart_jitter = nan"),
    ("[supervisor]", "ready_timeout = inf"),
    ("[supervisor]", "stable_period = 1e308"),
    ("[supervisor]", "restart_steps = 0"),
    ("[supervisor]", "flap_max = -1"),
    ("[supervisor]", "restart_sec = -0.5"),
    ("[agent:alpha]", "stop_timeout = nan"),
    ("[agent:alpha]", "stop_timeout = inf"),
    ("[agent:alpha]", "stop_timeout = 1e308"),
    ("[agent:alpha]", "stop_timeout = -1"),
    ("[agent:alpha]", "ready = alive:nan"),
    ("[agent:alpha]", "ready = alive:inf"),
    ("[agent:alpha]", "ready = alive:-1"),
    ("[agent:alpha]", "ready = tcp:localhost:0"),
    ("[agent:alpha]", "environment = A=B:x"),
    ("[agent:alpha]", "environment = 1A:x"),
    ("[agent:alpha]", "environment = A B:x"),
    ("[agent_defaults]", "stop_timeout = inf"),
    ("[agent_defaults]", "environment = A=B:x"),
])
def test_out_of_bounds_refused_with_file_and_line(layout, section, line):
    p, err = _refused(layout, f"{section}\n# comment\n{line}\n")
    key = line.split(" =")[0]
    assert (err.path, err.line) == (str(p), 3), str(err)
    assert key in str(err)


@pytest.mark.parametrize("line", [
    "restart_jitter = 1", "restart_jitter = 0", "flap_window = 1", "ready_timeout = 0",
])
def test_edges_inside_bounds_accepted(layout, line):
    _, settings = _load(layout, f"[supervisor]\n{line}\n")
    plans_for(settings)
    _policy(settings)  # what run builds from them: must not raise


def test_policy_accepts_every_value_the_types_accept():
    # The pure core's own invariant agrees with the option types' bounds.
    RestartPolicy(jitter=1.0, flap_window=1.0, restart_steps=1000, flap_max=1000)


def test_error_never_echoes_the_value(layout):
    _, err = _refused(layout, "[agent:alpha]\nenvironment = DB=URL:mysql://u:S3cretPass@db\n")
    assert "S3cretPass" not in str(err) and "environment" in str(err)
    _, err = _refused(layout, "[supervisor]\nstop_dataplane = S3cretPass\n")
    assert "S3cretPass" not in str(err) and "stop_dataplane" in str(err)


def test_parse_error_names_file_line_section_never_the_line(layout):
    p = layout.write("override", "svc/svc.conf.d/10-db.conf",
                     "[database]\nconnection = x\npassword S3cretPass\n")
    with pytest.raises(ConfigError) as err:
        plans_for(layout.settings())
    assert (err.value.path, err.value.line) == (str(p), 3)
    assert "[database]" in str(err.value) and "S3cretPass" not in str(err.value)


@pytest.mark.parametrize("name", [
    "../../escape", "a/b", "with space", "n\u00f6va", "-lead", ".hidden", "a..b",
    "x" * 65, "x" * 300, "Upper", "",
])
def test_bad_agent_names_refused_at_their_header(layout, name):
    p, err = _refused(layout, f"# c\n[agent:{name}]\ncommand = /bin/true\n")
    assert (err.path, err.line) == (str(p), 2), str(err)
    assert "invalid agent name" in str(err)
    assert "run_dir" not in str(err)


@pytest.mark.parametrize("name", ["ovn-metadata", "ceilometer@1", "a.b_c", "x" * 64, "9lives"])
def test_good_agent_names(layout, name):
    _, settings = _load(layout, f"[DEFAULT]\nenabled_agents = {name}\n"
                                f"[agent:{name}]\ncommand = /bin/true\n")
    assert list(plans_for(settings)) == [name]


def test_unknown_keys_and_sections_warn_with_file_and_line(layout):
    p, settings = _load(layout, "[supervisor]\nstop_timout = 60\n[agent:alpha]\n\n"
                                "stop-timeout = 5\nready = notify\n[agnet:beta]\nx = 1\n"
                                "[DEFAULT]\ndebug = true\nlog_dir_x = /x\n")
    got = [(w.path, w.line, w.reason) for w in settings.warnings]
    assert got == [
        (str(p), 2, "Unknown key name 'stop_timout' in section 'supervisor', ignoring"),
        (str(p), 5, "Unknown key name 'stop-timeout' in section 'agent:alpha', ignoring"),
        (str(p), 7, "Unknown section 'agnet:beta', ignoring"),
        (str(p), 11, "Unknown key name 'log_dir_x' in section 'DEFAULT', ignoring"),
    ]


def test_shipped_catalog_has_no_unknown_keys():
    from hvsupervisor.config.settings import load_settings

    s = load_settings(override_dir="/nonexistent-override")
    assert s.warnings == []


def test_agents_own_files_are_not_judged(layout):
    layout.write("override", "svc/svc.conf.d/10-x.conf", "[whatever]\nanything = 1\n")
    assert layout.settings().warnings == []
