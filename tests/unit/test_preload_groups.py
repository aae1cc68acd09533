"""core/preload_groups.py: which agents share a preloader, and when it is stale."""

from __future__ import annotations

from hvsupervisor.core.preload_groups import Entry, entry_point, groups, stale

PIP_SCRIPT = """#!/opt/hv/bin/python3
# -*- coding: utf-8 -*-
import re
import sys
from neutron.cmd.agents.dhcp import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


def test_entry_point_of_a_pip_console_script():
    assert entry_point(PIP_SCRIPT) == Entry("/opt/hv/bin/python3", "neutron.cmd.agents.dhcp",
                                            "main")


def test_not_console_scripts():
    assert entry_point("#!/bin/sh\nexec /opt/hv/bin/python3 -m neutron\n") is None
    assert entry_point("from x import main\nsys.exit(main())\n") is None  # no shebang
    assert entry_point("#!/usr/bin/python3\nfrom x import main\nmain()\n") is None


def test_groups_by_interpreter_and_identity():
    py = "/opt/hv/bin/python3"
    ovs = "993:993:995"  # neutron + openvswitch
    plain = "993:993:"  # neutron alone (the metadata agent)
    got = groups([
        ("neutron-openvswitch-agent", Entry(py, "neutron.cmd.agents.ovs_neutron_agent", "main"),
         ovs),
        ("neutron-dhcp-agent", Entry(py, "neutron.cmd.agents.dhcp", "main"), ovs),
        ("neutron-l3-agent", Entry(py, "neutron.cmd.agents.l3", "main"), ovs),
        ("neutron-metadata-agent", Entry(py, "neutron.cmd.agents.metadata", "main"), plain),
    ])
    assert got["neutron-dhcp-agent"] is got["neutron-l3-agent"] is got["neutron-openvswitch-agent"]
    assert got["neutron-dhcp-agent"].modules == ("neutron.cmd.agents.dhcp",
                                                 "neutron.cmd.agents.l3",
                                                 "neutron.cmd.agents.ovs_neutron_agent")
    assert got["neutron-dhcp-agent"].interpreter == py
    assert "neutron-metadata-agent" not in got  # alone in its group: exec


def test_stale_after_a_code_change_only():
    assert not stale(1000.0, [900.0, 1000.5])  # older, or within the clock's second
    assert stale(1000.0, [900.0, 1002.0])
    assert not stale(1000.0, [])
