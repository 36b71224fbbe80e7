"""ltx-ray: Parquet manifests -> LTX-2 videos (H.264 + AAC) on Ray.

The public facade; everything else is an implementation module.
"""

from ltx_ray.nightly import NightlySummary, nightly
from ltx_ray.qc import QCConfig, QCReport, check_video
from ltx_ray.recipes import Recipe, expand_manifests, load_recipe
from ltx_ray.report import build_report, write_report
from ltx_ray.results import ResultRow, read_results
from ltx_ray.run import RunConfig, RunSummary, run
from ltx_ray.schema import Job, ManifestRow

__all__ = [
    "Job", "ManifestRow", "NightlySummary", "QCConfig", "QCReport", "Recipe", "ResultRow", "RunConfig", "RunSummary",
    "build_report", "check_video", "expand_manifests", "load_recipe", "nightly", "read_results", "run", "write_report",
]
__version__ = "0.1.0"
