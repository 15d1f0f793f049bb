"""Faults caused for real: deadlines, cancellation, shutdown, oversized input, stale locks."""
