"""The shipped units in a real systemd: PID 1 in an nspawn container (tests/fixtures/nspawn.py).

What users do with the service: `systemctl start|reload|restart`, `journalctl -u/-t`, drop-in
snippets. Each is driven here against a real systemd, not a fake.

1. A smoke test with a tiny Python Type=notify unit proves the harness itself.
2. The shipped hvsupervisor.service with a stand-in main process (systemd semantics of the unit
   as written: dependencies, cleanup once per boot, directories, the watchdog, KillMode=process).
3. The shipped unit running the real `hvsupervisor run` with stand-in agents (tests/standin.py).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from tests.fixtures.nspawn import PROJECT_ROOT, Container, wait_until, write_console_script

pytestmark = pytest.mark.e2e

UNITS = PROJECT_ROOT / "units"
PY = sys.executable

# A Type=notify main process in ~20 lines of stdlib: READY=1 after a delay, STATUS= on SIGHUP,
# WATCHDOG=1 pings at half the interval (from its main loop, so SIGSTOP stops them), and a
# child that calls setsid() (to see KillMode=mixed reach it). argv: delay, child-pidfile or "-".
PROBE = textwrap.dedent(
    """\
    import os, signal, socket, sys, time
    addr = os.environ["NOTIFY_SOCKET"]
    addr = "\\0" + addr[1:] if addr.startswith("@") else addr
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    def notify(msg):
        sock.sendto(msg.encode(), addr)
    print("probe: starting", flush=True)
    if sys.argv[2] != "-":
        child = os.fork()
        if child == 0:
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(60)
        open(sys.argv[2], "w").write(str(child))
    time.sleep(float(sys.argv[1]))
    reloads = 0
    def on_hup(*_):
        global reloads
        reloads += 1
        notify(f"STATUS=reloaded {reloads}")
    signal.signal(signal.SIGHUP, on_hup)
    print("probe: sending READY=1", flush=True)
    notify("READY=1\\nSTATUS=probe ready")
    wd = int(os.environ.get("WATCHDOG_USEC", "0")) / 2e6
    while True:
        time.sleep(wd or 60)
        if wd:
            notify("WATCHDOG=1")
    """
)


@pytest.fixture(scope="module")
def probe_script(systemd_container: Container) -> pathlib.Path:
    path = systemd_container.shared / "probe.py"
    path.write_text(PROBE)
    return path


def timed(fn, *args, **kwargs):
    t0 = time.monotonic()
    out = fn(*args, **kwargs)
    return out, time.monotonic() - t0


# ---------------------------------------------------------------------------------------------
# 1. The harness


def test_smoke_notify_unit(systemd_container: Container, probe_script, record_property):
    c = systemd_container
    record_property("boot_seconds", round(c.boot_seconds, 3))
    delay = 1.0
    c.install_unit(
        "smoke-probe.service",
        f"""\
[Service]
Type=notify
NotifyAccess=main
ExecStart={PY} {probe_script} {delay} -
ExecReload=/bin/kill -HUP $MAINPID
SyslogIdentifier=smoke-ident
""",
    )
    try:
        res, took = timed(c.systemctl, "start", "smoke-probe.service")
        assert res.returncode == 0, res.stderr
        # `systemctl start` of a Type=notify unit returns only once READY=1 arrived.
        assert took >= delay, f"start returned after {took:.2f}s, before READY=1"
        assert c.show("smoke-probe.service", "ActiveState") == "active"
        assert c.show("smoke-probe.service", "StatusText") == "probe ready"
        record_property("start_to_ready_seconds", round(took, 3))

        c.systemctl("reload", "smoke-probe.service", check=True)
        wait_until(
            lambda: c.show("smoke-probe.service", "StatusText") == "reloaded 1",
            10, what="STATUS= after reload",
        )  # fmt: skip

        by_unit = c.journal("-u", "smoke-probe.service")
        assert "probe: sending READY=1" in by_unit
        by_ident = c.journal("-t", "smoke-ident")
        assert "probe: starting" in by_ident and "probe: sending READY=1" in by_ident
    finally:
        c.systemctl("stop", "smoke-probe.service")
        c.remove_unit("smoke-probe.service")


# ---------------------------------------------------------------------------------------------
# 2. The shipped units, with the probe as the main process and a recording cleanup stub.
#    This proves what the unit file itself promises, whatever the supervisor does.

SERVICE = "hvsupervisor.service"
CLEANUP = "hvsupervisor-cleanup.service"


@pytest.fixture
def probe_units(systemd_container: Container, probe_script) -> dict[str, pathlib.Path]:
    """Install the shipped units; drop-ins swap in the probe and a cleanup stub (as a venv
    install swaps ExecStart=), and shorten the watchdog and restart delays for the test."""
    c = systemd_container
    shared = c.shared
    files = {
        "cleanup_log": shared / "cleanup.log",
        "grandchild": shared / "probe-grandchild.pid",
    }
    for f in files.values():
        f.unlink(missing_ok=True)
    stub = shared / "cleanup-stub"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {files["cleanup_log"]}\n')
    stub.chmod(0o755)
    c.write(f"/etc/systemd/system/{SERVICE}", (UNITS / SERVICE).read_text())
    c.write(f"/etc/systemd/system/{CLEANUP}", (UNITS / CLEANUP).read_text())
    c.write(
        f"/etc/systemd/system/{SERVICE}.d/50-probe.conf",
        f"""\
[Service]
ExecStart=
ExecStart={PY} {probe_script} 0.3 {files["grandchild"]}
ExecReload=
ExecReload=/bin/kill -HUP $MAINPID
WatchdogSec=2s
TimeoutAbortSec=2s
RestartSec=200ms
""",
    )
    c.write(
        f"/etc/systemd/system/{CLEANUP}.d/50-stub.conf",
        f"[Service]\nExecStart=\nExecStart={stub} ovs\nExecStart={stub} netns\n",
    )
    c.systemctl("daemon-reload", check=True)
    yield files
    c.systemctl("stop", SERVICE, CLEANUP)
    c.systemctl("reset-failed", SERVICE, CLEANUP)
    c.remove_unit(SERVICE, CLEANUP, f"{SERVICE}.d", f"{CLEANUP}.d")


@pytest.fixture
def probe_unit(systemd_container: Container, probe_units):
    """The shipped unit started with the probe (probe_units stops and removes it)."""
    c = systemd_container
    res = c.systemctl("start", SERVICE)
    assert res.returncode == 0, res.stderr + c.journal("-u", SERVICE, "-n", "30")
    return probe_units


def main_pid(c: Container) -> int:
    return int(c.show(SERVICE, "MainPID"))


def test_shipped_unit_starts_with_deps_cleanup_and_dirs(systemd_container: Container, probe_unit):
    c = systemd_container
    assert c.show(SERVICE, "ActiveState") == "active"
    assert c.show(SERVICE, "StatusText") == "probe ready"
    # The cleanup oneshot ran first, both commands in order, and stays active.
    assert probe_unit["cleanup_log"].read_text().splitlines()[:2] == ["ovs", "netns"]
    assert c.show(CLEANUP, "ActiveState") == "active"
    cleanup_done = int(c.show(CLEANUP, "ExecMainExitTimestampMonotonic"))
    started = int(c.show(SERVICE, "ExecMainStartTimestampMonotonic"))
    assert 0 < cleanup_done <= started
    # Wants= pulled in the host daemons (basic.target started neither), and After= had them
    # finish starting before ExecStart.
    for dep in ("libvirtd.service", "openvswitch-switch.service"):
        assert int(c.show(dep, "InactiveExitTimestampMonotonic")) > 0, f"{dep} was not started"
        if c.show(dep, "ActiveState") == "active":
            assert int(c.show(dep, "ActiveEnterTimestampMonotonic")) <= started, dep
    modes = {
        "/run/hvsupervisor": 0o750,
        "/var/lib/hvsupervisor": 0o711,
        "/var/log/hvsupervisor": 0o750,
    }
    for path, mode in modes.items():
        st = (c.root / path.lstrip("/")).stat()
        assert (st.st_mode & 0o7777, st.st_uid) == (mode, 0), path


def test_restart_reruns_nothing_and_kills_only_the_main_process(systemd_container: Container,
                                                                probe_unit):
    """`systemctl restart`: no second cleanup; KillMode=process: systemd signals the main
    process alone, and a setsid() grandchild is left for the supervisor to judge (it stops
    agents itself and keeps the data plane; see section 3)."""
    c = systemd_container
    cleanups = probe_unit["cleanup_log"].read_text()
    old_main = main_pid(c)
    grandchild = int(
        wait_until(lambda: probe_unit["grandchild"].read_text().strip(), 5, what="pidfile")
    )
    assert c.alive(grandchild)
    res, took = timed(c.systemctl, "restart", SERVICE)
    assert res.returncode == 0, res.stderr
    assert c.show(SERVICE, "ActiveState") == "active"
    assert main_pid(c) != old_main
    assert not c.alive(old_main)
    try:
        assert c.alive(grandchild), "systemd killed more than the main process"
    finally:
        c.run(["kill", "-KILL", str(grandchild)])
    assert probe_unit["cleanup_log"].read_text() == cleanups, "cleanup ran again on restart"


def test_host_daemon_stop_does_not_stop_the_unit(systemd_container: Container, probe_unit):
    """Wants=, not Requires=: stopping or restarting OVS (a package upgrade does) or libvirtd
    leaves the supervisor and its agents alone."""
    c = systemd_container
    before = main_pid(c)
    c.systemctl("restart", "openvswitch-switch.service", timeout=60)
    c.systemctl("stop", "libvirtd.service", "openvswitch-switch.service", timeout=60)
    assert c.show(SERVICE, "ActiveState") == "active"
    assert main_pid(c) == before


def test_watchdog_restarts_a_hung_main_process(systemd_container: Container, probe_unit):
    c = systemd_container
    before = main_pid(c)
    restarts = int(c.show(SERVICE, "NRestarts"))
    t0 = time.monotonic()
    c.run(["kill", "-STOP", str(before)], check=True)

    def restarted() -> bool:
        return (
            int(c.show(SERVICE, "NRestarts")) > restarts
            and c.show(SERVICE, "ActiveState") == "active"
            and main_pid(c) not in (0, before)
        )

    wait_until(restarted, 20, interval=0.2, what="a watchdog restart")
    took = time.monotonic() - t0
    assert not c.alive(before)
    assert "Watchdog timeout" in c.journal("-u", SERVICE, "--since", "-1min")
    # WatchdogSec=2s, then SIGABRT (a stopped process cannot act on it), TimeoutAbortSec=2s, then
    # SIGKILL, RestartSec=200ms, then READY=1 0.3 s after the new start.
    assert took < 10, f"watchdog restart took {took:.1f}s"


def test_stop_removes_the_runtime_dir_and_every_process(systemd_container: Container, probe_unit):
    c = systemd_container
    pid = main_pid(c)
    grandchild = int(
        wait_until(lambda: probe_unit["grandchild"].read_text().strip(), 5, what="pidfile")
    )
    c.systemctl("stop", SERVICE, check=True)
    assert not c.alive(pid)
    try:  # KillMode=process: what the main process leaves is its own business
        assert c.alive(grandchild)
    finally:
        c.run(["kill", "-KILL", str(grandchild)])
    assert not (c.root / "run/hvsupervisor").exists()
    assert (c.root / "var/lib/hvsupervisor").is_dir()  # state is kept


# ---------------------------------------------------------------------------------------------
# 3. The shipped unit running the real `hvsupervisor run`, with stand-in agents
#    (tests/standin.py) configured through a defaults dir and an override dir with conf.d
#    snippets, the way an operator configures the node.


def _missing_supervisor() -> str | None:
    """Why the real-supervisor tests cannot run yet, or None."""
    if not (PROJECT_ROOT / "tests" / "standin.py").exists():
        return "tests/standin.py not in this checkout yet"
    res = subprocess.run(
        [PY, "-m", "hvsupervisor", "run", "--help"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if res.returncode != 0:
        return f"`hvsupervisor run` does not exist yet: {res.stderr.strip().splitlines()[-1:]}"
    return None


ALPHA_HELLO = "alpha says hello"
BETA_HELLO = "beta says hello"

# The plan appends `--config-file F` per resolved file (the upstream daemons' oslo.config
# flags); tests/standin.py does not take that flag, so this wrapper takes them off, prints
# them (the journal then shows which files an agent got) and execs the stand-in in place.
STANDIN_WRAPPER = textwrap.dedent(
    """\
    import os, sys
    args, files, it = [], [], iter(sys.argv[2:])
    for a in it:
        if a == "--config-file":
            files.append(next(it))
        else:
            args.append(a)
    print("config files: " + " ".join(files), flush=True)
    os.execv(sys.executable, [sys.executable, sys.argv[1], *args])
    """
)


@contextlib.contextmanager
def _shipped_unit_started(c: Container, base: pathlib.Path, defaults: pathlib.Path,
                          override: pathlib.Path, journal_lines: int, service_extra: str = ""):
    """The shipped unit, with a drop-in that runs this checkout's CLI on these layers
    (plus ``service_extra`` [Service] lines), started; yields what the tests need
    (cli argv, override dir, base dir, start_seconds); stopped and reset after."""
    cli = write_console_script(base / "venv" / "bin")
    layers = f"--defaults-dir {defaults} --override-dir {override}"
    c.write(f"/etc/systemd/system/{SERVICE}", (UNITS / SERVICE).read_text())
    c.write(f"/etc/systemd/system/{SERVICE}.d/50-venv.conf", f"""\
[Service]
ExecStart=
ExecStart={cli} {layers} run
ExecReload=
ExecReload={cli} {layers} reload
{service_extra}""")
    c.systemctl("daemon-reload", check=True)
    env = {"cli": [str(cli), *layers.split()], "override": override, "base": base}
    res, took = timed(c.systemctl, "start", SERVICE)
    env["start_seconds"] = took
    try:
        assert res.returncode == 0, res.stderr + c.journal("-u", SERVICE, "-n",
                                                          str(journal_lines))
        yield env
    finally:
        c.systemctl("stop", SERVICE)
        c.systemctl("reset-failed", SERVICE)


@pytest.fixture
def hvsup(systemd_container: Container):
    """hvsupervisor.service as shipped, plus a venv drop-in running this checkout with a test
    defaults dir (two stand-in agents) and an empty override dir; started, then stopped."""
    reason = _missing_supervisor()
    if reason:
        pytest.skip(reason)
    c = systemd_container
    base = c.shared / "hvsup"
    if base.exists():
        shutil.rmtree(base)
    defaults, override = base / "defaults", base / "override"
    base.mkdir(parents=True)
    standin = base / "standin-wrapper.py"
    standin.write_text(STANDIN_WRAPPER)
    standin = f"{standin} {PROJECT_ROOT / 'tests' / 'standin.py'}"
    catalog = f"""\
[DEFAULT]
enabled_agents = alpha,beta

[supervisor]
ready_timeout = 30
metrics_textfile =

[agent:alpha]
# Starts (or adopts, by its pid file) a data-plane helper stand-in named dnsmasq.
command = {{bindir}}/python {standin} --ready-after 0.3 --print '{ALPHA_HELLO}' --helper-grandchild dnsmasq:{{state_dir}}/dnsmasq.pid
config_files = alpha/alpha.conf
config_dirs = alpha/alpha.conf.d
ready = notify
stop_timeout = 3

[agent:beta]
# Ignores SIGTERM and leaves a setsid() grandchild, like the DHCP agent with dnsmasq.
command = {{bindir}}/python {standin} --ready-after 0.3 --print '{BETA_HELLO}' --ignore-sigterm --setsid-grandchild {{run_dir}}/beta-grandchild.pid
config_files = beta/beta.conf
ready = notify
stop_timeout = 1
"""  # noqa: E501
    for rel, text in {
        "hvsupervisor.conf": catalog,
        "alpha/alpha.conf": "[DEFAULT]\n",
        "beta/beta.conf": "[DEFAULT]\n",
    }.items():
        (defaults / rel).parent.mkdir(parents=True, exist_ok=True)
        (defaults / rel).write_text(text)
    (override / "alpha" / "alpha.conf.d").mkdir(parents=True)
    try:
        with _shipped_unit_started(c, base, defaults, override, journal_lines=40,
                                   service_extra="WatchdogSec=3s\nTimeoutAbortSec=3s\n"
                                                 "RestartSec=200ms\n") as env:
            yield env
    finally:
        helper = c.root / "var/lib/hvsupervisor/dnsmasq.pid"
        if helper.exists():
            c.run(["kill", "-KILL", helper.read_text().strip()])
            helper.unlink()
        c.remove_unit(SERVICE, f"{SERVICE}.d")


def status(c: Container, env) -> dict:
    res = c.run([*env["cli"], "status", "--format", "json"], check=True)
    return json.loads(res.stdout)


def agents(c: Container, env) -> dict[str, dict]:
    return {a["name"]: a for a in status(c, env)["agents"]}


def ready_pids(c: Container, env) -> dict[str, int] | None:
    """{agent: pid} once every agent is ready, else None."""
    st = agents(c, env)
    if all(a["ready"] and a["pid"] for a in st.values()):
        return {name: a["pid"] for name, a in st.items()}
    return None


def test_start_returns_after_ready_with_status(
    systemd_container: Container, hvsup, record_property
):
    c = systemd_container
    record_property("start_seconds", round(hvsup["start_seconds"], 3))
    # `systemctl start` returned: READY=1 was sent, which means every agent is ready.
    st = status(c, hvsup)
    assert st["ready"] is True
    assert {a["name"] for a in st["agents"]} == {"alpha", "beta"}
    assert all(a["ready"] and a["state"] == "ready" for a in st["agents"]), st
    text = c.show(SERVICE, "StatusText")
    assert text
    shown = c.systemctl("status", SERVICE, "-l").stdout
    assert f'Status: "{text}"' in shown


def test_journal_per_agent_and_per_unit(systemd_container: Container, hvsup):
    c = systemd_container
    wait_until(lambda: ALPHA_HELLO in c.journal("-t", "alpha"), 10, what="alpha in journal")
    assert BETA_HELLO not in c.journal("-t", "alpha")
    wait_until(lambda: BETA_HELLO in c.journal("-t", "beta"), 10, what="beta in journal")
    unit = c.journal("-u", SERVICE)
    assert ALPHA_HELLO in unit and BETA_HELLO in unit


def test_reload_restarts_only_the_affected_agent(systemd_container: Container, hvsup):
    c = systemd_container
    before = ready_pids(c, hvsup)
    assert before
    snippet = hvsup["override"] / "alpha" / "alpha.conf.d" / "10-debug.conf"
    snippet.write_text("[DEFAULT]\ndebug = true\n")
    res = c.systemctl("reload", SERVICE)
    assert res.returncode == 0, res.stderr + c.journal("-u", SERVICE, "-n", "20")

    def alpha_replaced():
        pids = ready_pids(c, hvsup)
        return pids if pids and pids["alpha"] != before["alpha"] else None

    after = wait_until(alpha_replaced, 15, interval=0.1, what="alpha restarted by reload")
    assert after["beta"] == before["beta"], "reload restarted an agent whose plan did not change"
    # The restarted alpha was given the snippet (the first alpha ran before it existed).
    wait_until(lambda: str(snippet) in c.journal("-t", "alpha"), 5, what="snippet in argv")
    assert not c.alive(before["alpha"])
    assert c.show(SERVICE, "ActiveState") == "active"


def test_bad_snippet_fails_reload_and_keeps_agents(systemd_container: Container, hvsup):
    c = systemd_container
    before = ready_pids(c, hvsup)
    assert before
    main = main_pid(c)
    bad = hvsup["override"] / "alpha" / "alpha.conf.d" / "20-broken.conf"
    bad.write_text("this line is not ini\n")
    res = c.systemctl("reload", SERVICE)
    assert res.returncode != 0, "systemctl reload succeeded with a broken snippet"
    assert str(bad) in c.journal("-u", SERVICE, "--since", "-1min")
    assert c.show(SERVICE, "ActiveState") == "active"
    assert main_pid(c) == main
    assert ready_pids(c, hvsup) == before, "a refused reload touched the agents"


def test_restart_leaves_no_old_agent_behind(systemd_container: Container, hvsup):
    c = systemd_container
    before = ready_pids(c, hvsup)
    assert before
    grandchild_file = c.root / "run/hvsupervisor/beta-grandchild.pid"
    grandchild = int(wait_until(lambda: grandchild_file.read_text().strip(), 5, what="pidfile"))
    old_main = main_pid(c)
    res, took = timed(c.systemctl, "restart", SERVICE)
    assert res.returncode == 0, res.stderr
    leftovers = [p for p in (old_main, grandchild, *before.values()) if c.alive(p)]
    assert not leftovers, f"processes outlived the restart: {leftovers}"
    after = ready_pids(c, hvsup)
    assert after and not set(after.values()) & set(before.values())


def test_hung_supervisor_trips_the_watchdog(systemd_container: Container, hvsup):
    c = systemd_container
    before = ready_pids(c, hvsup)
    assert before
    old_main = main_pid(c)
    restarts = int(c.show(SERVICE, "NRestarts"))
    c.run(["kill", "-STOP", str(old_main)], check=True)

    def restarted() -> bool:
        return (
            int(c.show(SERVICE, "NRestarts")) > restarts
            and c.show(SERVICE, "ActiveState") == "active"
            and main_pid(c) not in (0, old_main)
        )

    wait_until(restarted, 30, interval=0.2, what="a watchdog restart")
    assert "Watchdog timeout" in c.journal("-u", SERVICE, "--since", "-1min")
    assert not [p for p in (old_main, *before.values()) if c.alive(p)]
    assert ready_pids(c, hvsup)


def test_killed_agent_comes_back_and_the_unit_stays(systemd_container: Container, hvsup):
    """An OOM kill is a SIGKILL of one agent. (systemd's own OOMPolicy= reaction needs cgroup v2
    memory accounting, which this hybrid-cgroup host lacks; test_units.py checks the directive.)"""
    c = systemd_container
    before = ready_pids(c, hvsup)
    assert before
    main, unit_restarts = main_pid(c), c.show(SERVICE, "NRestarts")
    c.run(["kill", "-KILL", str(before["alpha"])], check=True)

    def alpha_back():
        pids = ready_pids(c, hvsup)
        return pids if pids and pids["alpha"] != before["alpha"] else None

    after = wait_until(alpha_back, 20, interval=0.1, what="alpha respawned")
    assert after["beta"] == before["beta"]
    assert agents(c, hvsup)["alpha"]["restarts"] >= 1
    assert c.show(SERVICE, "ActiveState") == "active"
    assert (main_pid(c), c.show(SERVICE, "NRestarts")) == (main, unit_restarts)


def _agent_copies(c: Container) -> dict[str, list[int]]:
    """Every process in the container running the alpha or beta stand-in agent: must be one
    each, always. An agent is a session leader (the supervisor spawns it with setsid); its
    forked setsid() grandchild carries the same argv but leads no session."""
    out: dict[str, list[int]] = {"alpha": [], "beta": []}
    res = c.run(["ps", "-eo", "pid=,sid=,args="], check=True)
    for line in res.stdout.splitlines():
        pid, sid, *rest = line.split(None, 2)
        args = rest[0] if rest else ""
        if "standin.py" not in args or pid != sid:
            continue
        for name, hello in (("alpha", ALPHA_HELLO), ("beta", BETA_HELLO)):
            if hello in args:
                out[name].append(int(pid))
    return out


def test_restarts_and_a_crash_keep_the_data_plane_and_never_duplicate_agents(
    systemd_container: Container, hvsup, record_property
):
    """`systemctl restart` twice, then a SIGKILL of the supervisor: the data-plane helper
    (dnsmasq stand-in) keeps its pid throughout and is adopted by each new alpha; every
    time there is exactly one alpha and one beta, and none of the old agents is left."""
    c = systemd_container
    pidfile = c.root / "var/lib/hvsupervisor/dnsmasq.pid"
    helper = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10,
                            what="helper pidfile"))
    assert c.alive(helper)
    before = ready_pids(c, hvsup)
    assert before
    timings = []
    for round_ in range(2):
        old_main = main_pid(c)
        res, took = timed(c.systemctl, "restart", SERVICE)
        assert res.returncode == 0, res.stderr + c.journal("-u", SERVICE, "-n", "40")
        timings.append(round(took, 2))
        after = wait_until(lambda: ready_pids(c, hvsup), 20, what="agents ready again")
        assert not set(after.values()) & set(before.values()), (round_, before, after)
        assert not [p for p in (old_main, *before.values()) if c.alive(p)]
        assert c.alive(helper), f"restart {round_ + 1} killed the data plane"
        assert pidfile.read_text().strip() == str(helper), "a second helper was started"
        copies = _agent_copies(c)
        assert copies == {"alpha": [after["alpha"]], "beta": [after["beta"]]}, copies
        before = after
    record_property("restart_seconds", timings)
    # A crash: the supervisor is SIGKILLed; its agents live on in the unit's cgroup
    # (KillMode=process), Restart=on-failure starts a new one, which stops them first.
    old_main, restarts = main_pid(c), int(c.show(SERVICE, "NRestarts"))
    c.run(["kill", "-KILL", str(old_main)], check=True)
    wait_until(lambda: int(c.show(SERVICE, "NRestarts")) > restarts
               and c.show(SERVICE, "ActiveState") == "active", 30, interval=0.2,
               what="restart after the crash")
    after = wait_until(lambda: ready_pids(c, hvsup), 20, what="agents ready after the crash")
    assert not [p for p in before.values() if c.alive(p)], "an old agent outlived the crash"
    assert _agent_copies(c) == {"alpha": [after["alpha"]], "beta": [after["beta"]]}
    assert c.alive(helper) and pidfile.read_text().strip() == str(helper)
    assert "event=stale-process" in c.journal("-u", SERVICE, "--since", "-1min")
    # A plain stop keeps it too (stop_dataplane = false); the fixture kills it.
    c.systemctl("stop", SERVICE, check=True)
    assert c.alive(helper)


# 4. Agents as their own users: the shipped sysusers file applied the packaging way, then
#    `systemctl start` of the shipped unit with two stand-in agents as nova and neutron.

SYSUSERS = UNITS / "sysusers.d" / "hvsupervisor.conf"


def _proc_status(c: Container, pid: int) -> dict[str, str]:
    text = (c.root / f"proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.fixture
def hvsup_users(systemd_container: Container):
    """sysusers.d applied in the container (as a package's postinst does), then the shipped
    unit running `hvsupervisor run` with a nova and a neutron stand-in agent; stopped after."""
    reason = _missing_supervisor()
    if reason:
        pytest.skip(reason)
    from tests.functional.privsep_rig import venv_traversable

    venv_traversable()  # the agents' users exec this venv's python (tox: under /root)
    c = systemd_container
    # What `hvsupervisor install-units` and the packaging put in place, then apply it.
    c.write("/etc/sysusers.d/hvsupervisor.conf", SYSUSERS.read_text())
    res = c.run(["systemd-sysusers", "hvsupervisor.conf"])
    assert res.returncode == 0, res.stderr
    base = c.shared / "hvsup-users"
    if base.exists():
        shutil.rmtree(base)
    defaults, override = base / "defaults", base / "override"
    standin = base / "standin-wrapper.py"
    base.mkdir(parents=True)
    base.chmod(0o755)
    standin.write_text(STANDIN_WRAPPER)
    standin = f"{standin} {PROJECT_ROOT / 'tests' / 'standin.py'}"
    catalog = f"""\
[DEFAULT]
enabled_agents = compute,network

[supervisor]
ready_timeout = 30
metrics_textfile =

[agent:compute]
command = {{bindir}}/python {standin} --ready-after 0.3 --print 'compute as nova'
config_files = nova/nova.conf
directories = {{state_dir}}/nova
ready = notify
stop_timeout = 3
user = nova

[agent:network]
command = {{bindir}}/python {standin} --ready-after 0.3 --print 'network as neutron'
config_files = neutron/neutron.conf
directories = {{state_dir}}/neutron
ready = notify
stop_timeout = 3
user = neutron
supplementary_groups = openvswitch
"""
    for rel, text in {"hvsupervisor.conf": catalog, "nova/nova.conf": "[DEFAULT]\n",
                      "neutron/neutron.conf": "[DEFAULT]\n"}.items():
        (defaults / rel).parent.mkdir(parents=True, exist_ok=True)
        (defaults / rel).write_text(text)
    override.mkdir()
    try:
        with _shipped_unit_started(c, base, defaults, override, journal_lines=60) as env:
            yield env
    finally:
        c.remove_unit(SERVICE, f"{SERVICE}.d")


def test_start_with_agents_as_sysusers_users(systemd_container: Container, hvsup_users,
                                             record_property):
    c = systemd_container
    record_property("start_seconds", round(hvsup_users["start_seconds"], 3))
    print(f"systemctl start, agents as nova/neutron: {hvsup_users['start_seconds']:.2f}s")
    ids = {}
    for user in ("nova", "neutron"):
        res = c.run(["getent", "passwd", user])
        assert res.returncode == 0, f"sysusers did not create {user}"
        ids[user] = res.stdout.split(":")[2:4]
    members = c.run(["getent", "group", "openvswitch"], check=True).stdout.strip()
    assert set(members.rsplit(":", 1)[1].split(",")) >= {"nova", "neutron"}, members
    # `systemctl start` returned: READY=1 came, so both agents are ready, as their users.
    assert c.show(SERVICE, "ActiveState") == "active"
    st = status(c, hvsup_users)
    assert st["ready"] is True, st
    by_name = {a["name"]: a for a in st["agents"]}
    for name, user in (("compute", "nova"), ("network", "neutron")):
        agent = by_name[name]
        assert agent["ready"] and agent["state"] == "ready", agent
        proc = _proc_status(c, agent["pid"])
        uid, gid = ids[user]
        assert proc["Uid"].split() == [uid] * 4, (name, proc["Uid"])
        assert proc["Gid"].split()[0] == gid, (name, proc["Gid"])
        assert proc["CapEff"] == "0000000000000000", (name, proc["CapEff"])
        assert proc["CapBnd"] == "0000000000000000", (name, proc["CapBnd"])
        # Its directory is its own (the supervisor made it and handed it over).
        d = c.root / "var/lib/hvsupervisor" / user
        assert str(d.stat().st_uid) == uid, d
    # The supervisor itself stays root: it is the one privileged process of the unit.
    main = _proc_status(c, main_pid(c))
    assert main["Uid"].split()[0] == "0"
    shown = c.systemctl("status", SERVICE, "-l").stdout
    assert "active (running)" in shown and 'Status: "' in shown, shown
    journal = c.journal("-t", "compute", "--since", "-2min")
    assert "compute as nova" in journal, journal[-2000:]
