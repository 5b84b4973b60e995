"""Test support: the real local stack and service processes for integration tests."""
