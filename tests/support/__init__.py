"""Helpers of the test suite (fixtures, data builders, subprocess scripts), importable as `tests.support`."""
