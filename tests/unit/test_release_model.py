"""The release core (core/release_model.py) and the on-disk store's atomic parts."""

from __future__ import annotations

import json
import os

import pytest

from hvsupervisor.core.release_model import (
    Dist,
    GateView,
    Release,
    Txn,
    gate,
    newest_pending,
    normalize,
    recover,
    release_id,
)
from hvsupervisor.release.store import MANIFEST, ReleaseError, ReleaseStore


def _rel(rid: str, built: str, bad: str = "", nova: str = "34.0.0") -> Release:
    return Release(rid, "2026.2", "0.1.0", built,
                   (Dist("nova", nova, "a" * 64), Dist("oslo_config", "10.7.0", "b" * 64)), bad)


def test_manifest_round_trip_and_summary():
    rel = _rel("2026.2-0.1.0-abcdef12", "2026-12-07T06:00:00Z")
    again = Release.from_manifest(json.loads(json.dumps(rel.to_manifest())))
    assert again == rel
    assert rel.dist_version("oslo.config") == "10.7.0"  # PEP 503 names
    assert "nova 34.0.0" in rel.summary() and "track 2026.2" in rel.summary()
    with pytest.raises(ValueError, match="lacks"):
        Release.from_manifest({"id": "x"})


def test_release_id_names_track_version_and_pins():
    assert release_id("2026.1", "0.1.0", "0123456789abcdef") == "2026.1-0.1.0-01234567"
    assert normalize("Oslo_Config") == normalize("oslo.config") == "oslo-config"


@pytest.mark.parametrize("state", ["switching", "rolling-back"])
def test_an_interrupted_switch_goes_back_to_where_it_started(state):
    txn = Txn("old", "new", state)
    for current in ("new", None, "old"):
        rec = recover(txn, current, ["old", "new"])
        assert rec is not None and rec.current == "old" and rec.clear
    assert recover(None, "old", ["old"]) is None


def test_recovery_without_the_old_release_stays_put():
    rec = recover(Txn("gone", "new", "switching"), "new", ["new"])
    assert rec.current == "new" and "not installed" in rec.note


def test_txn_refuses_what_is_not_a_transaction():
    with pytest.raises(ValueError):
        Txn.from_primitive({"from": "a", "to": "b", "state": "half"})


def test_restart_pending_names_the_newest_good_release_only():
    cur = _rel("a", "2026-01-01T00:00:00Z")
    older = _rel("b", "2025-01-01T00:00:00Z")
    newer = _rel("c", "2026-06-01T00:00:00Z")
    newest_bad = _rel("d", "2026-09-01T00:00:00Z", bad="gate failed")
    assert newest_pending(cur, [cur, older, newer, newest_bad]) == newer
    assert newest_pending(cur, [cur, older]) is None
    assert newest_pending(None, [newer]) is None


@pytest.mark.parametrize("view, why", [
    (GateView(False), "does not answer"),
    (GateView(True, "old", True, {}), "runs old, not new"),
    (GateView(True, "new", True, {"a": "starting"}), "a: starting"),
    (GateView(True, "new", False, {"a": ""}), "READY=1 not sent"),
    (GateView(True, "new", True, {"a": ""}, "exit 3: nova-compute down"), "exit 3"),
])
def test_the_gate_says_why_it_does_not_pass(view, why):
    ok, reason = gate(view, "new")
    assert not ok and why in reason


def test_the_gate_passes_when_all_serve():
    assert gate(GateView(True, "new", True, {"a": "", "b": ""}), "new") == (True, "")
    assert gate(GateView(True, "new", True, {"a": ""}, ""), "new") == (True, "")


def _install_fake(store: ReleaseStore, rel: Release) -> None:
    d = store.path(rel.id)
    d.mkdir(parents=True)
    (d / MANIFEST).write_text(json.dumps(rel.to_manifest()))


def test_store_links_marks_and_journal(tmp_path):
    store = ReleaseStore(tmp_path)
    a, b = _rel("r-a", "2026-01-01T00:00:00Z"), _rel("r-b", "2026-02-01T00:00:00Z")
    _install_fake(store, a)
    _install_fake(store, b)
    (store.releases / "r-half").mkdir()  # no manifest: a half-done install, not listed
    assert [r.id for r in store.installed()] == ["r-a", "r-b"]
    store.set_link("current", "r-a")
    assert store.link("current") == "r-a"
    assert os.readlink(tmp_path / "current") == "releases/r-a"  # relative: the root may move
    store.set_link("current", "r-b")
    assert store.link("current") == "r-b" and not list(tmp_path.glob(".current*"))
    store.mark_bad("r-b", "gate: neutron-openvswitch-agent: failed (exit 1)")
    assert store.get("r-b").bad.startswith("gate:")
    store.clear_bad("r-b")
    assert store.get("r-b").bad == ""
    store.write_txn(Txn("r-a", "r-b", "switching"))
    assert store.read_txn() == Txn("r-a", "r-b", "switching")
    store.clear_txn()
    assert store.read_txn() is None
    with pytest.raises(ReleaseError, match="not a release id"):
        store.path("../etc")
    with pytest.raises(ReleaseError, match="not installed"):
        store.require("r-zzz")


def test_one_switch_at_a_time(tmp_path):
    store = ReleaseStore(tmp_path)
    assert not store.switcher_alive()
    with store.switch_lock():
        assert store.switcher_alive()
        with pytest.raises(ReleaseError, match="another release switch"):
            with store.switch_lock():
                pass
    assert not store.switcher_alive()
