"""The variant campaign (issue 21): seeded generators of hostile inputs, one per class,
run through the real CLI and daemon on every backend, judged by an independent oracle.
See docs/reliability.md and ``python -m bench.variants --help``."""
