"""The supervisor's own config: layering, validation and every error path."""

import signal

import pytest

from hvsupervisor.config.errors import ConfigError


def test_catalog_conf_d_snippet_layers_like_any_file(layout):
    layout.write("override", "hvsupervisor.conf.d/10-only-alpha.conf",
                 "[DEFAULT]\nenabled_agents = alpha\n")
    assert layout.settings().enabled_agents == ["alpha"]


def test_override_catalog_replaces_whole(layout):
    layout.write("override", "hvsupervisor.conf", """\
        [DEFAULT]
        enabled_agents = solo
        [agent:solo]
        command = /bin/true
        """)
    s = layout.settings()
    assert list(s.agents) == ["solo"] and s.enabled_agents == ["solo"]


def test_agent_fields(layout):
    spec = layout.settings().agents["beta"]
    assert spec.after == ("alpha",)
    assert spec.ready == "notify"
    assert spec.stop_timeout is None  # unset: follows graceful_shutdown_timeout (stopbudget)
    assert spec.stop_signal == signal.SIGTERM
    assert spec.command == ("/bin/true",)


def _bad(layout, text):
    p = layout.write("override", "hvsupervisor.conf.d/90-bad.conf", text)
    with pytest.raises(ConfigError) as err:
        layout.settings()
    return p, err.value


def test_unknown_enabled_agent(layout):
    p, err = _bad(layout, "[DEFAULT]\nenabled_agents = alpha,gamma\n")
    assert str(err) == (f"{p}:2: enabled_agents names 'gamma', but there is no "
                        "[agent:gamma] section")


def test_bad_ready_rule(layout):
    p, err = _bad(layout, "[agent:alpha]\n\nready = sometimes\n")
    assert str(err).startswith(f"{p}:3: [agent:alpha] ready: invalid value: expected notify")


def test_bad_number(layout):
    p, err = _bad(layout, "[agent:alpha]\nstop_timeout = soon\n")
    assert err.path == str(p) and err.line == 2
    assert "[agent:alpha] stop_timeout: invalid value" in str(err)


def test_bad_stop_signal(layout):
    p, err = _bad(layout, "[agent:alpha]\nstop_signal = SIGSTOP\n")
    assert err.path == str(p) and err.line == 2
    assert "[agent:alpha] stop_signal: invalid value" in str(err)


def test_stop_signal_by_name(layout):
    layout.write("override", "hvsupervisor.conf.d/50-sig.conf",
                 "[agent:alpha]\nstop_signal = SIGINT\n")
    assert layout.settings().agents["alpha"].stop_signal == signal.SIGINT


def test_bad_gate_name(layout):
    p, err = _bad(layout, "[agent:alpha]\nhost_gates = libvirt,nfs\n")
    assert err.path == str(p) and "host_gates" in str(err)


def test_dependency_cycle(layout):
    p, err = _bad(layout, "[agent:alpha]\nafter = beta\n")
    assert str(err).endswith("dependency cycle in after =: alpha -> beta -> alpha")
    assert err.path == str(p)


def test_after_names_disabled_agent(layout):
    p, err = _bad(layout, "[DEFAULT]\nenabled_agents = beta\n")
    assert "beta: after names 'alpha', which is not in enabled_agents" in str(err)


def test_missing_command(layout):
    p, err = _bad(layout, "[agent:gamma]\nready = notify\n")
    assert str(err) == f"{p}:1: [agent:gamma] has no command (nor has [agent_defaults])"


def test_unbalanced_quote_in_command(layout):
    p, err = _bad(layout, "[agent:alpha]\ncommand = /bin/echo 'oops\n")
    assert str(err) == f"{p}:2: [agent:alpha] command: No closing quotation"


def test_catalog_parse_error_has_line(layout):
    p, err = _bad(layout, "[DEFAULT]\n  indented continuation first\n")
    assert err.path == str(p) and err.line == 2


def test_directories_from_command_line_win(layout, tmp_path):
    from hvsupervisor.config.settings import load_settings

    s = load_settings(layout.defaults, layout.override, state_dir=str(tmp_path / "s2"))
    assert s.state_dir == tmp_path / "s2"
    assert s.log_dir == tmp_path / "log"
