"""Operator tooling: outage logging for the worker, and `leadpilot doctor`."""
