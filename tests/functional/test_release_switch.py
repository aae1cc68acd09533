"""Release switch and rollback on a real supervisor, with releases built and installed here.

One artifact is built from this checkout (hvsupervisor and its dependencies as
wheels: PyPI is needed for that build, once per session), then variants of it
are made by giving it another id (the wheels are the same; the manifest is what
names a release), and each is installed offline into a temp release root with
Debian's python3, as a node does. The supervisor runs from the ``current``
link, as the unit does; its stand-in agents run with ``{bindir}/python``, i.e.
the release's own interpreter, so a release can break them: the "broken"
release carries a ``.pth`` line that makes every stand-in exit 1 at start
(the functional tier has no neutron: in e2e the broken release lacks the OVS
agent's code instead).
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from hvsupervisor.release import artifact
from hvsupervisor.release.store import ReleaseStore
from tests.fixtures.supervisor import ROOT, STANDIN, Node
from tests.util import kill_and_reap, pid_alive, read_pid, release_variant, wait_until

pytestmark = pytest.mark.functional

PYTHON3 = "/usr/bin/python3"  # Debian's: a node builds its release venvs with it
# A .pth line runs at every start of the release's python (Debian's own
# sitecustomize would shadow one of ours): the stand-ins die, the supervisor runs.
BREAK = ("import sys; sys.exit('broken release: the agent cannot start') "
         "if any(a.endswith('standin.py') for a in sys.argv) else None\n")


@pytest.fixture(scope="session")
def releases(tmp_path_factory):
    """A release root with three installed releases: ``ft-a``, ``ft-b`` (newer) and
    ``ft-bad`` (its agents cannot start)."""
    if not Path(PYTHON3).exists():
        pytest.skip("no /usr/bin/python3 (Debian's python3 builds the node's venvs)")
    out = tmp_path_factory.mktemp("artifacts")
    built, _rel = artifact.build("ft", ROOT, out, python=PYTHON3, requires=[])
    root = Path(tmp_path_factory.mktemp("release-root"))
    store = ReleaseStore(root)
    for rid, when in (("ft-a", "2026-01-01T00:00:00Z"), ("ft-b", "2026-02-01T00:00:00Z"),
                      ("ft-bad", "2026-03-01T00:00:00Z")):
        artifact.install(release_variant(built, out / f"{rid}.tar", id=rid, built=when),
                         store, python=PYTHON3)
    site = next((root / "releases" / "ft-bad" / "lib").glob("python3*/site-packages"))
    (site / "zz-broken-release.pth").write_text(BREAK)
    return store


class ReleaseNode(Node):
    """The supervisor and the CLI from the release root's ``current`` link."""

    def __init__(self, base, fake_notify, store: ReleaseStore):
        super().__init__(base, fake_notify)
        self.store = store

    def cli(self) -> list[str]:
        return [str(self.store.root / "current" / "bin" / "hvsupervisor"),
                "--defaults-dir", str(self.defaults), "--override-dir", str(self.override)]


@pytest.fixture
def rnode(tmp_path, fake_notify, releases):
    releases.set_link("current", "ft-a")
    for link in ("previous",):
        (releases.root / link).unlink(missing_ok=True)
    for r in releases.installed():
        releases.clear_bad(r.id)
    releases.clear_txn()
    n = ReleaseNode(tmp_path, fake_notify, releases)
    n.supervisor_opts.update(release_root=str(releases.root), health_interval="1")
    py = "{bindir}/python"
    n.agent("alpha", f"{py} {STANDIN} --helper-grandchild dnsmasq:{tmp_path / 'dns.pid'}",
            ready="alive:0.3")
    n.agent("beta", f"{py} {STANDIN}", ready="alive:0.3", after="alpha")
    yield n
    n.cleanup()
    for pidfile in tmp_path.glob("*.pid"):
        text = pidfile.read_text().strip()
        if text.isdigit() and pid_alive(int(text)):
            kill_and_reap([int(text)])


def _all_ready(node: Node, release: str) -> dict:
    def serving():
        st = _status_or_none(node)
        ok = st and st["release"] == release and st["ready"] and all(
            a["ready"] for a in st["agents"])
        return st if ok else None
    return wait_until(serving, 60, what=f"every agent ready on {release}")


def _status_or_none(node: Node):
    try:
        return node.status()
    except Exception:  # the control socket is away during the re-exec
        return None


def test_status_shows_the_release_and_a_newer_one_pending(rnode):
    rnode.start()
    st = _all_ready(rnode, "ft-a")
    assert "ft-bad" in st["release_pending"]  # the newest good one (none is BAD yet)
    table = rnode.hv("status")
    assert "release: ft-a" in table.stdout and "restart pending: release ft-bad" in table.stdout
    listed = json.loads(rnode.hv("release", "list", "--format", "json").stdout)
    assert listed["current"] == "ft-a"
    assert {r["id"]: r["role"] for r in listed["releases"]} == {
        "ft-a": "current", "ft-b": "installed", "ft-bad": "installed"}


def test_switch_restarts_the_agents_onto_the_new_code_and_keeps_the_data_plane(rnode, tmp_path):
    rnode.start()
    before = _all_ready(rnode, "ft-a")
    helper = read_pid(tmp_path / "dns.pid")
    agents_before = {a["name"]: a["pid"] for a in before["agents"]}
    r = rnode.hv("release", "switch", "ft-b", "--timeout", "60", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "release ft-b serves" in r.stdout
    after = _all_ready(rnode, "ft-b")
    assert rnode.proc.poll() is None  # the same supervisor process, re-exec'd
    assert all(after_pid != agents_before[a] for a, after_pid in
               ((a["name"], a["pid"]) for a in after["agents"]))
    for a in after["agents"]:  # the agents run the new release's interpreter
        with open(f"/proc/{a['pid']}/cmdline", "rb") as fh:
            assert b"/releases/ft-b/bin/python" in fh.read()
    assert pid_alive(helper), "a release switch must not touch the data plane"
    assert rnode.store.link("current") == "ft-b" and rnode.store.link("previous") == "ft-a"
    assert rnode.store.read_txn() is None
    # READY=1 again from the same pid after RELOADING=1 (what systemd needs to see)
    msgs = [f for pid, f in rnode.fake_notify.messages if pid == rnode.proc.pid]
    reloading = [i for i, f in enumerate(msgs) if f.get("RELOADING") == "1"]
    assert reloading and any(f.get("READY") == "1" for f in msgs[reloading[-1]:])


def test_a_release_whose_agents_cannot_start_is_rolled_back_and_marked(rnode, tmp_path):
    rnode.start()
    _all_ready(rnode, "ft-a")
    helper = read_pid(tmp_path / "dns.pid")
    r = rnode.hv("release", "switch", "ft-bad", "--timeout", "15", "--skip-precheck",
                 timeout=180)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "rolled back" in r.stderr and "alpha" in r.stderr
    _all_ready(rnode, "ft-a")
    assert rnode.store.link("current") == "ft-a"
    assert "alpha" in rnode.store.get("ft-bad").bad
    assert pid_alive(helper)
    listed = rnode.hv("release", "list").stdout
    assert "BAD:" in listed
    # never chosen again by itself: no longer the pending one
    assert "ft-b" in rnode.status()["release_pending"]


def test_a_refusal_by_the_new_code_changes_nothing(rnode):
    """New code may refuse what the old accepted: here ft-b's own option table is
    made stricter (ready_timeout at most 1000 s), the live config has 5000, which
    ft-a runs with. The switch is refused with the file:line, and nothing moves."""
    rnode.snippet("hvsupervisor.conf.d/90-slow.conf", "[supervisor]\nready_timeout = 5000\n")
    rnode.start()
    _all_ready(rnode, "ft-a")
    opts = next((rnode.store.root / "releases" / "ft-b" / "lib").glob(
        "python3*/site-packages/hvsupervisor/config/opts.py"))
    original = opts.read_text()
    strict = original.replace('"ready_timeout",\n        type=hvtypes.Seconds(),',
                              '"ready_timeout",\n        type=hvtypes.Seconds(max=1000),')
    assert strict != original
    opts.write_text(strict)
    try:
        pids = rnode.pids()
        r = rnode.hv("release", "switch", "ft-b", timeout=120)
    finally:
        opts.write_text(original)
    assert r.returncode == 1 and "nothing changed" in r.stderr, r.stderr
    assert "90-slow.conf:2" in r.stderr
    assert rnode.store.link("current") == "ft-a" and rnode.store.read_txn() is None
    assert rnode.pids() == pids  # no agent was touched


def test_a_killed_switch_leaves_exactly_one_release_after_the_next_start(rnode):
    """SIGKILL of the switcher and the supervisor mid-switch, as a power loss would:
    the next start resolves the journal and runs the release the switch started from."""
    rnode.start()
    _all_ready(rnode, "ft-a")
    sw = subprocess.Popen([*rnode.cli(), "--run-dir", str(rnode.run_dir), "release", "switch",
                           "ft-b", "--timeout", "60", "--skip-precheck"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until(lambda: rnode.store.read_txn() is not None and
               rnode.store.link("current") == "ft-b", 30, what="the link to move")
    sw.send_signal(signal.SIGKILL)
    rnode.proc.send_signal(signal.SIGKILL)
    sw.wait(10)
    rnode.proc.wait(10)
    rnode.start(wait_ready=False)  # the unit's restart: from the current link (ft-b now)
    st = _all_ready(rnode, "ft-a")
    assert st["release"] == "ft-a"
    assert rnode.store.link("current") == "ft-a" and rnode.store.read_txn() is None
    assert "interrupted switch ft-a -> ft-b" in rnode.output()
