"""ltx-ray: Parquet manifests -> LTX-2 videos (H.264 + AAC) on Ray.

The public facade; everything else is an implementation module.
"""

from ltx_ray.results import ResultRow, read_results
from ltx_ray.run import RunConfig, RunSummary, run
from ltx_ray.schema import Job, ManifestRow

__all__ = ["Job", "ManifestRow", "ResultRow", "RunConfig", "RunSummary", "read_results", "run"]
__version__ = "0.1.0"
