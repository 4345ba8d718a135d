"""Test support: real brokers, real databases and a running service, started and cleaned up per test."""
