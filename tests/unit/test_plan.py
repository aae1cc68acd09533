"""The plan: argv, env, digest stability and change."""

import os

from hvsupervisor.host.facts import plan_for, plans_for


def test_argv_is_command_plus_config_files_in_order(layout):
    s = layout.settings()
    plan = plan_for(s, s.agents["alpha"])
    assert plan.argv == (
        "/bin/true", "--name", "alpha",
        "--config-file", str(layout.defaults / "svc/svc.conf"),
        "--config-file", str(layout.defaults / "svc/alpha.ini"),
    )


def test_digest_stable_across_resolutions(layout):
    a = plans_for(layout.settings())
    b = plans_for(layout.settings())
    assert {n: p.digest for n, p in a.items()} == {n: p.digest for n, p in b.items()}


def test_digest_changes_with_file_bytes_only_for_readers(layout):
    before = plans_for(layout.settings())
    layout.write("defaults", "svc/alpha.ini", "[alpha]\nmode = b\n")
    after = plans_for(layout.settings())
    assert after["alpha"].digest != before["alpha"].digest
    assert after["beta"].digest == before["beta"].digest  # beta does not read alpha.ini


def test_snippet_changes_every_reader(layout):
    before = plans_for(layout.settings())
    layout.write("override", "svc/svc.conf.d/50-x.conf", "[DEFAULT]\nx = 1\n")
    after = plans_for(layout.settings())
    assert after["alpha"].digest != before["alpha"].digest
    assert after["beta"].digest != before["beta"].digest


def test_digest_changes_with_environment(layout):
    before = plans_for(layout.settings())["beta"].digest
    cat = layout.defaults / "hvsupervisor.conf"
    cat.write_text(cat.read_text() + "environment = FOO:bar\n")
    plan = plans_for(layout.settings())["beta"]
    assert plan.env == {"FOO": "bar"}
    assert plan.digest != before


def test_substitutions_and_bindir_lookup(layout, tmp_path):
    cat = layout.defaults / "hvsupervisor.conf"
    cat.write_text(cat.read_text().replace(
        "command = /bin/true\n",
        "command = python3 --log {log_dir}/{agent}.log\n"
        "environment = FILES:{config_files},STATE:{state_dir}\n"))
    s = layout.settings()
    plan = plan_for(s, s.agents["beta"])
    assert os.path.isabs(plan.argv[0]) and os.path.basename(plan.argv[0]).startswith("python3")
    assert plan.argv[1:3] == ("--log", f"{tmp_path}/log/beta.log")
    assert plan.env["FILES"] == str(layout.defaults / "svc/svc.conf")
    assert plan.env["STATE"] == f"{tmp_path}/state"


def test_ready_rule_substituted(layout):
    cat = layout.defaults / "hvsupervisor.conf"
    cat.write_text(cat.read_text().replace("ready = notify", "ready = unix:{run_dir}/b.sock"))
    s = layout.settings()
    plan = plan_for(s, s.agents["beta"])
    assert (plan.ready.kind, plan.ready.path) == ("unix", f"{layout.root}/run/b.sock")


def test_directories_substituted_and_outside_the_digest(layout):
    before = plans_for(layout.settings())["beta"].digest
    cat = layout.defaults / "hvsupervisor.conf"
    cat.write_text(cat.read_text() + "directories = {state_dir}/beta,{state_dir}/beta/x\n")
    plan = plans_for(layout.settings())["beta"]
    assert plan.directories == (f"{layout.root}/state/beta", f"{layout.root}/state/beta/x")
    assert plan.digest == before  # making a directory changes nothing the daemon reads
