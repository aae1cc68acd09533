"""Issue 10 section 6: secrets never leave, in any output (the pure part)."""

from importlib import metadata

import pytest

from hvsupervisor.config import secrets
from hvsupervisor.config.secrets import mask_argv, mask_env, mask_text, mask_value
from tests.unit import fake_secret_opts


def test_url_password_containing_at_is_masked_whole():
    assert mask_text("mysql+pymysql://nova:p@ss@db/nova") == "mysql+pymysql://nova:****@db/nova"
    assert mask_text("rabbit://u:a@b@h1:5672,u2:c@d@h2:5672/") == (
        "rabbit://u:****@h1:5672,u2:****@h2:5672/")
    assert mask_text("rabbit://u:plain@h/") == "rabbit://u:****@h/"
    assert mask_text("no url here") == "no url here"


@pytest.mark.parametrize("url, shown", [
    # a ',' or '/' inside a password: oslo.messaging's host split would make a
    # fake host of "u:p"; the whole userinfo up to the last '@' is masked.
    ("rabbit://u:p,w@host:5672/", "rabbit://u:****@host:5672/"),
    ("mysql+pymysql://nova:s3,cr/t@db/nova?charset=utf8", "mysql+pymysql://nova:****@db/nova?charset=utf8"),
    ("rabbit://u:p,w@h1,u2:q@h2/", "rabbit://u:****@h2/"),
    # clean entries keep every host
    ("rabbit://nova:a@10.0.0.1:5672,nova:b@[fd00::2]:5672/",
     "rabbit://nova:****@10.0.0.1:5672,nova:****@[fd00::2]:5672/"),
    ("rabbit://h1:5672,h2:5672/", "rabbit://h1:5672,h2:5672/"),
    ("rabbit://guest@h/", "rabbit://guest@h/"),
    ("a rabbit://u:p@h b mysql://v:q@g/x", "a rabbit://u:****@h b mysql://v:****@g/x"),
])
def test_url_password_with_separator_never_leaks(url, shown):
    assert mask_text(url) == shown
    for piece in ("p,w", "s3,cr", "cr/t", ",w@"):
        assert piece not in mask_text(url)


@pytest.mark.parametrize("name", ["rabbit_pass", "hmac_keys", "password", "os_password",
                                  "metadata_proxy_shared_secret", "auth_token", "fixed_key"])
def test_name_heuristic(name):
    assert mask_value(name, "x") == "****"


def test_argv_flags_masked():
    argv = ["/bin/x", "--password", "S3cret", "--os-password=S3cret", "--db-token", "t",
            "--url", "rabbit://u:S3cret@h/", "--debug", "--password"]
    out = mask_argv(argv)
    assert "S3cret" not in " ".join(out)
    assert out == ["/bin/x", "--password", "****", "--os-password=****", "--db-token", "****",
                   "--url", "rabbit://u:****@h/", "--debug", "--password"]


def test_env_judged_as_group_option():
    declared = frozenset({("vault", "approle_role_id")})
    env = {"OS_VAULT__APPROLE_ROLE_ID": "abc", "OS_DEFAULT__DEBUG": "true",
           "DB_PASSWORD": "x", "OS_DATABASE__CONNECTION": "mysql://u:pw@db/x"}
    assert mask_env(env, declared) == {
        "OS_VAULT__APPROLE_ROLE_ID": "****", "OS_DEFAULT__DEBUG": "true",
        "DB_PASSWORD": "****", "OS_DATABASE__CONNECTION": "mysql://u:****@db/x"}


@pytest.fixture
def fake_schema(monkeypatch, tmp_path):
    ep = metadata.EntryPoint(name="nova.conf", group=secrets.ENTRY_POINT_GROUP,
                             value="tests.unit.fake_secret_opts:list_opts")
    monkeypatch.setattr(secrets, "_entry_points", lambda: [ep])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    secrets.declared_secrets.cache_clear()
    fake_secret_opts.LOADS.clear()
    yield
    secrets.declared_secrets.cache_clear()


def test_declared_secret_options_are_masked_and_cached(fake_schema, tmp_path):
    declared = secrets.declared_secrets()
    assert declared == {("vault", "approle_role_id"), ("profiler", "hmac_keys"),
                        ("DEFAULT", "rabbit_thing")}
    # A name the heuristic does not catch: masked only because the schema says so.
    assert mask_value("approle_role_id", "x", "vault") == "x"
    assert mask_value("approle_role_id", "x", "vault", declared) == "****"
    assert mask_value("kv_path", "x", "vault", declared) == "x"
    # The second CLI run reads the cache file instead of importing the schemas.
    assert list((tmp_path / "cache" / "hvsupervisor").glob("secret-options-*.json"))
    secrets.declared_secrets.cache_clear()
    assert secrets.declared_secrets() == declared
    assert fake_secret_opts.LOADS == [1]


def test_explain_cli_masks_what_the_schema_declares(fake_schema, layout, capsys):
    from hvsupervisor.cmd.cli import main

    layout.write("override", "svc/svc.conf.d/10-v.conf", "[vault]\napprole_role_id = S3cret\n")
    assert main(layout.cli() + ["config", "explain", "alpha", "vault", "approle_role_id"]) == 0
    out = capsys.readouterr().out
    assert "S3cret" not in out and "****" in out


def test_without_schemas_the_heuristic_rules(monkeypatch):
    monkeypatch.setattr(secrets, "_entry_points", lambda: [])
    secrets.declared_secrets.cache_clear()
    try:
        assert secrets.declared_secrets() == frozenset()
    finally:
        secrets.declared_secrets.cache_clear()
