"""Releases: one artifact per OpenStack track, installed offline, switched atomically.

I/O shell around core/release_model.py: ``artifact`` builds and installs the
artifact, ``store`` holds the installed releases, their links and the switch
transaction on disk, ``switch`` carries a switch (or rollback) out and gates it
on the node serving. doc/release.md says how operators use it.
"""
