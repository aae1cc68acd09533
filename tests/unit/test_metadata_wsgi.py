"""nova-api-metadata launcher: argv and paste-file resolution (no gunicorn run)."""

from __future__ import annotations

import os

import pytest

from hvsupervisor.agents import metadata_wsgi, wsgi


def test_server_options_are_taken_and_the_rest_is_the_apps_argv_in_order():
    parser = wsgi.server_arg_parser("x")
    opts, rest = wsgi.split_argv(parser, ["--bind", "127.0.0.1:8775", "--log-file", "/l",
                                          "--config-file", "a", "--workers", "2",
                                          "--config-file", "b"])
    assert (opts.bind, opts.workers) == ("127.0.0.1:8775", 2)
    assert rest == ["--log-file", "/l", "--config-file", "a", "--config-file", "b"]


def test_paste_file_beside_the_last_config_file_wins(tmp_path):
    defaults, override = tmp_path / "defaults", tmp_path / "override"
    for d in (defaults, override):
        d.mkdir()
        (d / "api-paste.ini").write_text("[composite:metadata]\n")
    argv = ["--config-file", str(defaults / "nova.conf"),
            "--config-file=" + str(override / "50.conf")]
    assert metadata_wsgi.find_paste_config(argv, str(tmp_path / "none")) == \
        str(override / "api-paste.ini")


def test_falls_back_to_the_copy_nova_installs_under_the_prefix(tmp_path):
    (tmp_path / "etc" / "nova").mkdir(parents=True)
    (tmp_path / "etc" / "nova" / "api-paste.ini").write_text("")
    argv = ["--config-file", str(tmp_path / "conf" / "nova.conf")]
    found = metadata_wsgi.find_paste_config(argv, str(tmp_path))
    assert found == str(tmp_path / "etc" / "nova" / "api-paste.ini") or found == \
        "/etc/nova/api-paste.ini"


def test_prepare_points_nova_at_the_paste_file_and_keeps_argv(tmp_path):
    paste = tmp_path / "api-paste.ini"
    paste.write_text("")
    env: dict[str, str] = {}
    argv = metadata_wsgi.prepare(["--config-file", "x.conf"], env, str(paste))
    assert argv == ["nova-api-metadata", "--config-file", "x.conf"]
    assert os.path.join(env["OS_NOVA_CONFIG_DIR"], env["OS_NOVA_CONFIG_FILES"]) == str(paste)


def test_a_missing_paste_config_is_one_line_and_exit_78(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        metadata_wsgi.main(["--bind", "127.0.0.1:1", "--paste-config", str(tmp_path / "no")])
    assert exc.value.code == 78
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]
