"""Every layering rule of README.md ("Configuration"), asserted on the resolved plan."""

import os

import pytest

from hvsupervisor.config.errors import ConfigError
from hvsupervisor.host.facts import plan_for


def _files(layout, agent="alpha"):
    s = layout.settings()
    plan = plan_for(s, s.agents[agent])
    return [(os.path.relpath(f.path, layout.root), f.layer) for f in plan.files]


def test_defaults_only(layout):
    assert _files(layout) == [
        ("defaults/svc/svc.conf", "defaults"),
        ("defaults/svc/alpha.ini", "defaults"),
    ]


def test_override_base_file_replaces_default_whole(layout):
    layout.write("override", "svc/svc.conf", "[DEFAULT]\nverbose = true\n")
    s = layout.settings()
    plan = plan_for(s, s.agents["alpha"])
    assert [(os.path.relpath(f.path, layout.root), f.layer) for f in plan.files][0] == (
        "override/svc/svc.conf", "override")
    # Whole file replaced: the default's 'debug' is not read at all.
    assert all("defaults/svc/svc.conf" not in f.path for f in plan.files)


def test_snippets_after_base_sorted_by_name_across_layers(layout):
    layout.write("defaults", "svc/svc.conf.d/50-glance.conf", "[DEFAULT]\na = 1\n")
    layout.write("override", "svc/svc.conf.d/99-local.conf", "[DEFAULT]\na = 2\n")
    layout.write("override", "svc/svc.conf.d/10-early.conf", "[DEFAULT]\na = 0\n")
    assert _files(layout)[2:] == [
        ("override/svc/svc.conf.d/10-early.conf", "override"),
        ("defaults/svc/svc.conf.d/50-glance.conf", "defaults"),
        ("override/svc/svc.conf.d/99-local.conf", "override"),
    ]


def test_override_snippet_replaces_same_name(layout):
    layout.write("defaults", "svc/svc.conf.d/50-x.conf", "[DEFAULT]\na = 1\n")
    layout.write("override", "svc/svc.conf.d/50-x.conf", "[DEFAULT]\na = 2\n")
    assert _files(layout)[2:] == [("override/svc/svc.conf.d/50-x.conf", "override")]


def test_empty_snippet_masks(layout):
    layout.write("defaults", "svc/svc.conf.d/50-x.conf", "[DEFAULT]\na = 1\n")
    layout.write("override", "svc/svc.conf.d/50-x.conf", "")
    assert _files(layout)[2:] == []


def test_devnull_link_masks(layout):
    layout.write("defaults", "svc/svc.conf.d/50-x.conf", "[DEFAULT]\na = 1\n")
    d = layout.override / "svc/svc.conf.d"
    d.mkdir(parents=True)
    (d / "50-x.conf").symlink_to(os.devnull)
    assert _files(layout)[2:] == []


def test_non_conf_files_ignored_and_reported(layout):
    layout.write("override", "svc/svc.conf.d/60-typo.cnf", "[DEFAULT]\na = 1\n")
    from hvsupervisor.config import layers

    res = layers.resolve(layout.defaults, layout.override, ["svc/svc.conf"], ["svc/svc.conf.d"])
    assert [p.name for p in res.ignored] == ["60-typo.cnf"]
    assert all(f.path.name != "60-typo.cnf" for f in res.files)


def test_missing_base_file_is_an_error(layout):
    (layout.defaults / "svc/alpha.ini").unlink()
    with pytest.raises(ConfigError) as err:
        _files(layout)
    assert "base config file 'svc/alpha.ini'" in str(err.value)


def test_broken_symlink_snippet_is_an_error(layout):
    d = layout.override / "svc/svc.conf.d"
    d.mkdir(parents=True)
    (d / "70-gone.conf").symlink_to(layout.root / "nowhere.conf")
    with pytest.raises(ConfigError) as err:
        _files(layout)
    assert str(err.value).startswith(str(d / "70-gone.conf"))
    assert "broken symlink" in str(err.value)


def test_unreadable_snippet_is_an_error(layout):
    d = layout.override / "svc/svc.conf.d"
    (d / "80-dir.conf").mkdir(parents=True)
    with pytest.raises(ConfigError) as err:
        _files(layout)
    assert "80-dir.conf: not a regular file" in str(err.value)


def test_unparsable_snippet_names_file_and_line(layout):
    p = layout.write("override", "svc/svc.conf.d/90-bad.conf",
                     "[DEFAULT]\nok = 1\nthis is not ini\n")
    with pytest.raises(ConfigError) as err:
        _files(layout)
    assert err.value.path == str(p)
    assert err.value.line == 3
    assert str(err.value).startswith(f"{p}:3: No ':' or '=' found")
