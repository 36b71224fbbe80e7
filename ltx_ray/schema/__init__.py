"""The contract: what a manifest row, a job and a result row may hold.

Rule: pydantic and the standard library only. Nothing here imports another ltx_ray layer,
torch, av, fsspec or ray, so validating a manifest costs no GPU stack.
"""
