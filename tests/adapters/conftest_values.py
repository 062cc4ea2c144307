"""Constants shared by the adapter tests (a module of its own: test files cannot import conftest)."""

from node.sampledata import unit_uscc

UNIT = unit_uscc("330102", "MB000001")
OTHER_UNIT = unit_uscc("330102", "MB000002")
