"""Test doubles that ship with riskterm: the benchmarks use them, and so can a plugin's tests."""
