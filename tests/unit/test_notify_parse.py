"""Pure parts of the sd_notify shell: parsing, STATUS sanitising, watchdog env."""

import os

from hvsupervisor.systemd.notify import (
    SystemdNotifier,
    _watchdog_usec,
    parse_notify,
    sanitize_status,
)


def test_parse_simple_fields():
    assert parse_notify(b"READY=1\nSTATUS=up and running") == {
        "READY": "1", "STATUS": "up and running"}


def test_parse_ignores_garbage_lines():
    data = b"\n\nno equals here\n=novalue\n9BAD=1\nBAD KEY=1\nREADY=1\n\xff\xfe"
    assert parse_notify(data) == {"READY": "1"}


def test_parse_value_may_contain_equals_and_later_assignment_wins():
    assert parse_notify(b"STATUS=a=b\nSTATUS=c=d") == {"STATUS": "c=d"}


def test_parse_invalid_utf8_in_value_does_not_raise():
    assert parse_notify(b"STATUS=caf\xe9")["STATUS"].startswith("caf")


def test_parse_empty_datagram():
    assert parse_notify(b"") == {}


def test_sanitize_status_one_ascii_line():
    assert sanitize_status("waiting for\nneutron-server\r\n") == "waiting for neutron-server"
    assert sanitize_status("café → ovsdb ✓") == "cafe ? ovsdb ?"
    assert sanitize_status("tab\there") == "tab here"


def test_sanitize_status_truncates():
    out = sanitize_status("x" * 5000, limit=100)
    assert len(out) == 100 and out.endswith("...")


def test_watchdog_usec_honours_pid():
    me = str(os.getpid())
    assert _watchdog_usec("30000000", None) == 30000000
    assert _watchdog_usec("30000000", me) == 30000000
    assert _watchdog_usec("30000000", "1") is None
    assert _watchdog_usec("30000000", "garbage") is None
    assert _watchdog_usec("garbage", None) is None
    assert _watchdog_usec("0", None) is None
    assert _watchdog_usec(None, None) is None


def test_notifier_disabled_without_socket_is_a_noop():
    env = {"WATCHDOG_USEC": "20000000", "PATH": "/bin"}
    notifier = SystemdNotifier(env)
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.status("x") is False
    assert notifier.reloading() is False
    assert notifier.stopping() is False
    assert notifier.watchdog() is False
    # the watchdog value is still read, and removed from the environment
    assert notifier.watchdog_interval() == 20.0
    assert env == {"PATH": "/bin"}


def test_notifier_watchdog_for_another_pid_is_none():
    env = {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}
    assert SystemdNotifier(env).watchdog_interval() is None
    assert env == {}
