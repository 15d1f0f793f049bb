"""Benchmarks of memoryd against raw SQL, and the data sets they run on."""
