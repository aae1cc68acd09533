"""Start/stop order from `after =`, and the operator errors it can raise."""

import pytest

from hvsupervisor.core.deps import DependencyError, deps_ready, start_order, stop_order

# The shipped catalog's dependencies (etc/hvsupervisor.conf, `after =`).
CATALOG = {
    "nova-compute": [],
    "nova-api-metadata": [],
    "neutron-openvswitch-agent": [],
    "neutron-dhcp-agent": ["neutron-openvswitch-agent"],
    "neutron-l3-agent": ["neutron-openvswitch-agent"],
    "neutron-metadata-agent": ["nova-api-metadata"],
}


def test_shipped_catalog_order():
    assert start_order(CATALOG) == [
        "neutron-openvswitch-agent",
        "neutron-dhcp-agent",
        "neutron-l3-agent",
        "nova-api-metadata",
        "neutron-metadata-agent",
        "nova-compute",
    ]


def test_order_is_stable_whatever_the_input_order():
    shuffled = dict(reversed(list(CATALOG.items())))
    assert start_order(shuffled) == start_order(CATALOG)


def test_stop_order_is_reverse():
    assert stop_order(CATALOG) == list(reversed(start_order(CATALOG)))


def test_chain():
    assert start_order({"c": ["b"], "b": ["a"], "a": []}) == ["a", "b", "c"]


def test_cycle_is_named():
    after = {"a": ["b"], "b": ["c"], "c": ["a"], "d": []}
    with pytest.raises(DependencyError) as err:
        start_order(after)
    assert str(err.value) == "dependency cycle in after =: a -> b -> c -> a"


def test_cycle_behind_a_free_agent():
    after = {"x": ["y"], "y": ["z"], "z": ["y"]}
    with pytest.raises(DependencyError, match=r"^dependency cycle in after =: y -> z -> y$"):
        start_order(after)


def test_self_dependency():
    with pytest.raises(DependencyError, match=r"a -> a$"):
        start_order({"a": ["a"]})


def test_unknown_agent_is_named():
    with pytest.raises(DependencyError) as err:
        start_order({"neutron-dhcp-agent": ["neutron-ovs-agent"]})
    assert str(err.value) == (
        "agent neutron-dhcp-agent: after = neutron-ovs-agent names an agent that is not enabled"
    )


def test_deps_ready():
    assert deps_ready("nova-compute", CATALOG, set()) == (True, "")
    assert deps_ready("neutron-dhcp-agent", CATALOG, {"nova-api-metadata"}) == (
        False,
        "waiting for neutron-openvswitch-agent",
    )
    assert deps_ready("neutron-dhcp-agent", CATALOG, {"neutron-openvswitch-agent"}) == (True, "")
    assert deps_ready("x", {"x": ["a", "b"]}, {"b"}) == (False, "waiting for a")
    assert deps_ready("x", {"x": ["a", "b"]}, ()) == (False, "waiting for a, b")
