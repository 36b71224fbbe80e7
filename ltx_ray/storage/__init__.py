"""Bytes in and out: the output store (local or object storage), manifests, input bytes,
mp4 / thumbnail muxing and the results table.

Rule: imports ltx_ray.schema and ltx_ray.errors only; no torch, no model.
"""
