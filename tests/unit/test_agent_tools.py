"""check's "host tools" row: every missing program named with its Debian package.

``which`` is handed a fake PATH lookup: the rows are about what a host lacks,
and this machine has every tool installed.
"""

from __future__ import annotations

from hvsupervisor.host import agent_tools

ALL = ["nova-compute", "nova-api-metadata", "neutron-openvswitch-agent",
       "neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent"]


def _which(present: set[str]):
    seen: list[tuple[str, str]] = []

    def which(cmd: str, path: str | None = None) -> str | None:
        seen.append((cmd, path or ""))
        return f"/usr/bin/{cmd}" if cmd in present else None
    which.seen = seen  # type: ignore[attr-defined]
    return which


EVERY = {t.command for t in agent_tools.TOOLS}


def test_all_present_is_ok_and_lists_what_it_found():
    row = agent_tools.tools_row(ALL, {}, _which(EVERY))
    assert row.status == "ok"
    assert "dnsmasq" in row.detail and "qemu-img" in row.detail


def test_a_quiet_failure_is_a_warning_with_its_package():
    row = agent_tools.tools_row(ALL, {}, _which(EVERY - {"arping", "netstat"}))
    assert row.status == "warn"
    assert "arping (iputils-arping; neutron-l3-agent" in row.detail
    assert "netstat (net-tools;" in row.detail
    assert row.detail.endswith("apt-get install iputils-arping net-tools")


def test_a_program_an_agent_cannot_serve_without_fails():
    row = agent_tools.tools_row(ALL, {}, _which(EVERY - {"dnsmasq", "arping"}))
    assert row.status == "fail"
    assert "dnsmasq (dnsmasq-base; neutron-dhcp-agent: the DHCP server)" in row.detail
    assert "apt-get install dnsmasq-base iputils-arping" in row.detail


def test_only_enabled_agents_count():
    row = agent_tools.tools_row(["nova-api-metadata", "neutron-metadata-agent"], {},
                                _which(set()))
    assert row.status == "ok", row.detail
    row = agent_tools.tools_row(["neutron-openvswitch-agent"], {}, _which({"ip"}))
    assert row.status == "ok", row.detail  # dnsmasq/haproxy are the DHCP/L3 agents'


def test_each_agent_is_looked_up_on_its_own_path():
    which = _which(set())
    agent_tools.tools_row(["neutron-dhcp-agent"], {"neutron-dhcp-agent": "/opt/x/bin"}, which)
    assert ("dnsmasq", "/opt/x/bin") in which.seen


def test_found_on_any_users_path_is_enough():
    def which(cmd, path=None):
        return f"{path}/{cmd}" if path == "/l3" else None
    missing = agent_tools.missing_tools(["neutron-dhcp-agent", "neutron-l3-agent"],
                                        {"neutron-dhcp-agent": "/dhcp", "neutron-l3-agent": "/l3"},
                                        which)
    assert [t.command for t, _ in missing] == ["dnsmasq"]  # haproxy is found for the L3 agent
