"""Pure parts of the process shell: env scrubbing, exit descriptions, header."""


import pytest

from hvsupervisor.process.children import child_env, decode_wait_status
from hvsupervisor.systemd.journal import stream_header

BASE = {
    "PATH": "/usr/bin",
    "LANG": "C.UTF-8",
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "WATCHDOG_USEC": "30000000",
    "WATCHDOG_PID": "1",
    "LISTEN_FDS": "2",
    "LISTEN_PID": "1",
    "LISTEN_FDNAMES": "a:b",
    "JOURNAL_STREAM": "8:1234",
    "FDSTORE": "16",
    "INVOCATION_ID": "abc",
    "OS_DEFAULT__DEBUG": "true",
    "OS_OVS__INTEGRATION_BRIDGE": "br-x",
    "OS_CLOUD": "keep-me",  # no double underscore: not an oslo.config override
    "OS_AUTH_URL": "keep-me-too",
}


def test_child_env_scrubs_systemd_and_oslo_overrides():
    env = child_env(BASE, {})
    assert env == {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "INVOCATION_ID": "abc",
        "OS_CLOUD": "keep-me",
        "OS_AUTH_URL": "keep-me-too",
    }


def test_child_env_plan_wins_and_may_set_oslo_override():
    env = child_env(BASE, {"OS_DEFAULT__DEBUG": "false", "PATH": "/venv/bin:/usr/bin",
                           "OS_NOVA_CONFIG_DIR": "/etc/nova"})
    assert env["OS_DEFAULT__DEBUG"] == "false"
    assert env["PATH"] == "/venv/bin:/usr/bin"
    assert env["OS_NOVA_CONFIG_DIR"] == "/etc/nova"
    assert "OS_OVS__INTEGRATION_BRIDGE" not in env


def test_child_env_does_not_modify_inputs():
    base = dict(BASE)
    child_env(base, {"X": "1"})
    assert base == BASE


def test_decode_wait_status():
    assert decode_wait_status(3 << 8) == (3, None)
    assert decode_wait_status(9) == (None, 9)
    assert decode_wait_status(0x80 | 11) == (None, 11)  # core dumped


def test_stream_header_matches_sd_journal_stream_fd():
    assert stream_header("neutron-l3-agent", 6) == b"neutron-l3-agent\n\n6\n0\n0\n0\n0\n"
    assert stream_header("x", 3, level_prefix=True) == b"x\n\n3\n1\n0\n0\n0\n"


@pytest.mark.parametrize("ident,prio", [("a\nb", 6), ("a", 8), ("a", -1)])
def test_stream_header_rejects_bad_input(ident, prio):
    with pytest.raises(ValueError):
        stream_header(ident, prio)
