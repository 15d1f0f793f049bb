"""memoryd client: generated gRPC stubs for memoryd.v1 (``memoryd.v1``)."""

__version__ = "0.1.0"
