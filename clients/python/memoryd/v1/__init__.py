"""Generated code for the memoryd.v1 protos; regenerate with scripts/generate-protos."""
