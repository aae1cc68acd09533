"""The CLI's fast run_dir lookup gives what the full settings load gives, or nothing."""

from pathlib import Path

import pytest

from hvsupervisor.config import lookup


def _fast(layout) -> Path | None:
    return lookup.run_dir(layout.defaults, layout.override)


def test_catalog_value(layout):
    assert _fast(layout) == layout.settings().run_dir == layout.root / "run"


@pytest.mark.parametrize("name,text", [
    ("hvsupervisor.conf.d/50-run.conf", "[DEFAULT]\nrun_dir = {root}/snippet\n"),
    ("hvsupervisor.conf.d/50-run.conf", "[DEFAULT]\nrun_dir = '{root}/quoted'\n"),
    ("hvsupervisor.conf.d/50-run.conf", "[default]\nrun_dir = {root}/not-default\n"),
    ("hvsupervisor.conf.d/50-run.conf", "[supervisor]\nrun_dir = {root}/other-group\n"),
    ("hvsupervisor.conf", "[DEFAULT]\nenabled_agents =\n"),  # replaces the catalog whole
])
def test_same_answer_as_the_full_load(layout, name, text):
    layout.write("override", name, text.format(root=layout.root))
    assert _fast(layout) == layout.settings().run_dir


def test_later_snippet_wins(layout):
    layout.write("override", "hvsupervisor.conf.d/10-a.conf", "[DEFAULT]\nrun_dir = /a\n")
    layout.write("defaults", "hvsupervisor.conf.d/20-b.conf", "[DEFAULT]\nrun_dir = /b\n")
    assert _fast(layout) == layout.settings().run_dir == Path("/b")


def test_masked_snippet_is_not_read(layout):
    layout.write("defaults", "hvsupervisor.conf.d/20-b.conf", "[DEFAULT]\nrun_dir = /b\n")
    layout.write("override", "hvsupervisor.conf.d/20-b.conf", "")
    assert _fast(layout) == layout.settings().run_dir == layout.root / "run"


@pytest.mark.parametrize("text", [
    "[DEFAULT]\nrun_dir = $state_dir/run\n",     # substitution: oslo.config's business
    "[DEFAULT]\nrun_dir = /a\n  /b\n",           # a value on several lines
    "[DEFAULT\nrun_dir = /a\n",                  # does not parse
])
def test_unsure_answers_none(layout, text):
    layout.write("override", "hvsupervisor.conf.d/50-run.conf", text)
    assert _fast(layout) is None
