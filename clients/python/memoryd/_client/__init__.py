"""The hand-written typed client; import its names from ``memoryd``."""
