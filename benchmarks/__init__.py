"""securechat benchmarks: ``python -m benchmarks.bench [--quick]``."""
