"""A stand-in for an ``oslo.config.opts`` entry point (nova's ``nova.conf``),
used by test_secrets.py: nova is not installed in the unit tier."""

from oslo_config import cfg

LOADS = []


def list_opts():
    LOADS.append(1)
    return [
        ("vault", [cfg.StrOpt("approle_role_id", secret=True), cfg.StrOpt("kv_path")]),
        (cfg.OptGroup("profiler"), [cfg.StrOpt("hmac_keys", secret=True)]),
        (None, [cfg.StrOpt("rabbit_thing", secret=True)]),
    ]
