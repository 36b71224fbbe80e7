"""Benchmarks of ltx-ray (see README.md, "Benchmarks"); each script prints one JSON object last."""
