"""Thin launchers for upstream agents that ship no console script of their own."""
