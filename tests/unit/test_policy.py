"""Restart delays and flap detection, with pinned numbers (no clock, seeded rng)."""

import random

import pytest

from hvsupervisor.core.restart_policy import (
    FlapDetector,
    RestartPolicy,
    backoff_delay,
    nominal_delay,
)


def test_systemd_documented_curve():
    # systemd.service(5): RestartSec=10s, RestartSteps=4, RestartMaxDelaySec=160s
    # gives 10, 20, 40, 80, 160 s, and stays at 160 s after that.
    policy = RestartPolicy(restart_sec=10, restart_max_delay=160, restart_steps=4, jitter=0)
    delays = [nominal_delay(policy, n) for n in range(1, 8)]
    assert delays == pytest.approx([10, 20, 40, 80, 160, 160, 160])


def test_default_curve_grows_to_cap():
    delays = [nominal_delay(RestartPolicy(), n) for n in range(1, 8)]
    assert delays[0] == 0.1
    assert delays == sorted(delays)
    assert delays[5:] == [30.0, 30.0]
    ratio = (30.0 / 0.1) ** (1 / 5)
    assert delays[1] == pytest.approx(0.1 * ratio)


@pytest.mark.parametrize(
    "policy",
    [
        RestartPolicy(restart_steps=0),
        RestartPolicy(restart_sec=2.0, restart_max_delay=2.0),
        RestartPolicy(restart_sec=0.0),
    ],
)
def test_constant_delay_like_systemd(policy):
    assert {nominal_delay(policy, n) for n in range(1, 10)} == {policy.restart_sec}


def test_jitter_stays_within_bounds_and_under_cap():
    policy = RestartPolicy(jitter=0.25)
    rng = random.Random(7)
    for failures in range(1, 12):
        nominal = nominal_delay(policy, failures)
        for _ in range(200):
            delay = backoff_delay(policy, failures, rng)
            assert 0 <= delay <= policy.restart_max_delay
            assert nominal * 0.75 - 1e-9 <= delay <= nominal * 1.25 + 1e-9


def test_jitter_actually_varies_and_is_reproducible():
    policy = RestartPolicy(jitter=0.1)
    a = [backoff_delay(policy, 3, random.Random(1)) for _ in range(3)]
    b = [backoff_delay(policy, 3, random.Random(1)) for _ in range(3)]
    assert a == b
    rng = random.Random(1)
    assert len({backoff_delay(policy, 3, rng) for _ in range(20)}) > 1


def test_no_jitter_is_exact():
    policy = RestartPolicy(jitter=0)
    assert backoff_delay(policy, 4, random.Random(0)) == nominal_delay(policy, 4)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"restart_sec": -1}, "restart_sec"),
        ({"restart_sec": 5, "restart_max_delay": 1}, "restart_max_delay"),
        ({"restart_steps": -1}, "restart_steps"),
        ({"jitter": 1.5}, "jitter"),
        ({"flap_max": -1}, "flap_max"),
        ({"flap_window": 0}, "flap_window"),
        ({"stable_period": -1}, "stable_period"),
    ],
)
def test_bad_policy_is_a_clear_error(kwargs, word):
    with pytest.raises(ValueError, match=word):
        RestartPolicy(**kwargs)


def test_flap_detector_window():
    flap = FlapDetector(max_failures=3, window=10.0)
    flap.record(0.0)
    flap.record(4.0)
    assert not flap.flapping(5.0)
    flap.record(9.0)
    assert flap.flapping(9.0)
    assert flap.count(9.0) == 3
    # At t=10 the failure from t=0 has left the window.
    assert flap.count(10.0) == 2
    assert not flap.flapping(10.0)
    flap.reset()
    assert len(flap) == 0


def test_flap_detector_disabled_with_zero():
    flap = FlapDetector(max_failures=0, window=10.0)
    for t in range(100):
        flap.record(float(t) / 100)
    assert not flap.flapping(1.0)
