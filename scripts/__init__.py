"""Stand-alone tools (stdlib only), importable by tests and benchmarks as ``scripts.*``."""
