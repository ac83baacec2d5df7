"""Modules the tests import: paths, planted objects, invariants, stand-ins. No fixtures (those are in plugins/)."""
