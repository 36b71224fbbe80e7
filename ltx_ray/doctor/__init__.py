"""``ltx-ray doctor``: checks that every layer loads on this machine, one line per check
with its fix.

Rule: may import any layer, always inside a check, so a broken one is reported, not raised.
"""
