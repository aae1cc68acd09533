"""The broker's rules (pure) and the privilege-drop argv."""

from __future__ import annotations

import pytest

from hvsupervisor.privsep import grants, identity

UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
GRANT = grants.Grant(agent="neutron-dhcp-agent", uid=995, gid=995,
                     contexts=frozenset({"neutron.privileged.default"}), root_helper=True,
                     config_args=("--config-file", "/etc/n.conf"), env={})
PEER = grants.Peer(pid=100, uid=995, gid=995, in_agent_tree=True)
PRIVSEP = ["--privsep_context", "neutron.privileged.default",
           "--privsep_sock_path", "/tmp/tmpabc/privsep.sock"]


def test_privsep_helper_gets_the_agents_own_config_files():
    d = grants.decide(GRANT, PEER, "privsep-helper", PRIVSEP)
    assert d.allowed
    assert d.argv == ("privsep-helper", "--config-file", "/etc/n.conf", *PRIVSEP)
    assert d.sock_path == "/tmp/tmpabc/privsep.sock"


@pytest.mark.parametrize("peer, reason", [
    (grants.Peer(100, 0, 0, True), "peer uid 0 is not"),
    (grants.Peer(100, 995, 995, False), "not in neutron-dhcp-agent's process tree"),
])
def test_wrong_peer_is_refused(peer, reason):
    d = grants.decide(GRANT, peer, "privsep-helper", PRIVSEP)
    assert not d.allowed and reason in d.reason


@pytest.mark.parametrize("args, reason", [
    (["--privsep_context", "nova.privsep.sys_admin_pctxt", "--privsep_sock_path",
      "/tmp/a/privsep.sock"], "is not one of neutron-dhcp-agent's"),
    (["--privsep_context", "x;rm", "--privsep_sock_path", "/tmp/a/privsep.sock"],
     "malformed privsep context"),
    (["--privsep_context", "neutron.privileged.default", "--privsep_sock_path",
      "/tmp/a/../b/privsep.sock"], "not a normalised absolute path"),
    (["--privsep_context", "neutron.privileged.default", "--privsep_sock_path",
      "/tmp/a/other.sock"], "not named privsep.sock"),
    (PRIVSEP + ["--config-file", "/tmp/evil.conf"], "takes exactly"),
])
def test_privsep_requests_outside_the_grant_are_refused(args, reason):
    d = grants.decide(GRANT, PEER, "privsep-helper", args)
    assert not d.allowed and reason in d.reason


@pytest.mark.parametrize("args", [
    ["ip", "netns", "exec", f"qdhcp-{UUID}", "dnsmasq", "--no-hosts"],
    ["ip", "netns", "exec", f"qrouter-{UUID}", "env", f"PROCESS_TAG=haproxy-{UUID}",
     "NEUTRON_NETWORK_ID=x", "haproxy", "-f", "/x"],
    ["ip", "netns", "exec", f"qrouter-{UUID}", "neutron-keepalived-state-change", "--x"],
])
def test_root_helper_whitelist(args):
    assert grants.decide(GRANT, PEER, "root-helper", args).allowed


@pytest.mark.parametrize("args, reason", [
    (["iptables-save"], "allows only"),
    (["ip", "netns", "exec", "qdhcp-x", "dnsmasq"], "not a neutron q*-<uuid>"),
    (["ip", "netns", "exec", f"qdhcp-{UUID}", "/usr/sbin/dnsmasq"], "is not one of"),
    (["ip", "netns", "exec", f"qdhcp-{UUID}", "env", "PATH=/tmp", "dnsmasq"],
     "'PATH' is not allowed"),
    (["ip", "netns", "exec", f"qdhcp-{UUID}", "env"], "no program"),
])
def test_root_helper_refusals(args, reason):
    d = grants.decide(GRANT, PEER, "root-helper", args)
    assert not d.allowed and reason in d.reason


def test_unknown_verb_and_malformed_args():
    assert "unknown verb" in grants.decide(GRANT, PEER, "shell", []).reason
    assert "not a list" in grants.decide(GRANT, PEER, "root-helper", "ip").reason


@pytest.mark.parametrize("mode, owner, is_dir, problem", [
    (0o40700, 995, True, None),
    (0o40755, 995, True, "mode is 0755"),
    (0o40700, 0, True, "owned by uid 0"),
    (0o120777, 995, False, "symlink"),
])
def test_sock_dir(mode, owner, is_dir, problem):
    got = grants.sock_dir_problem(mode, owner, is_dir, 995)
    assert got == problem if problem is None else problem in got


def test_drop_argv_sets_groups_gid_uid_and_empties_the_capability_sets():
    ident = identity.Identity("nova", 995, "nova", 995, (990, 113), "/var/lib/nova")
    argv = identity.drop_argv(ident, ["nova-compute", "--x"], setpriv="/usr/bin/setpriv")
    assert argv == ["/usr/bin/setpriv", "--groups", "990,113", "--regid", "995",
                    "--reuid", "995", "--inh-caps=-all", "--ambient-caps=-all",
                    "--bounding-set=-all", "--no-new-privs", "--", "nova-compute", "--x"]
    lone = identity.Identity("nova", 995, "nova", 995, (), "/")
    assert "--clear-groups" in identity.drop_argv(lone, ["x"], setpriv="s")


def test_root_and_empty_mean_no_drop():
    assert identity.resolve("") is None
    assert identity.resolve("root") is None
    assert identity.resolve("root", group="nova", supplementary=["openvswitch"]) is None


def test_missing_user_and_group_are_named():
    with pytest.raises(identity.IdentityError, match="user 'no-such-user-x' does not exist"):
        identity.resolve("no-such-user-x")
    with pytest.raises(identity.IdentityError, match="group 'no-such-group-x' does not exist"):
        identity.resolve("nobody", group="no-such-group-x")
