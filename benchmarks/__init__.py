"""securechat benchmarks (issue 6, section 6): ``python -m benchmarks.bench [--quick]``."""
