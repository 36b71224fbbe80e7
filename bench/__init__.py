"""Benchmarks of ltx-ray (see docs/benchmarks.md); each script prints one JSON object last."""
