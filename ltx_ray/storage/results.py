"""The results table: one Parquet file per job under ``{out}/results/``, named by job_id.

One file per job means a worker commits its row the moment the job ends (a crash loses
nothing finished), and a rerun overwrites instead of duplicating. ``pyarrow.parquet.read_table(
f"{out}/results")`` reads them all as one table.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from ltx_ray.schema.results import ResultRow
from ltx_ray.storage.arrow import arrow_schema
from ltx_ray.storage.store import OutputStore

RESULTS_DIR = "results"

# One column per ResultRow field, in its order (ltx_ray.schema.columns).
ARROW_SCHEMA = arrow_schema(ResultRow)


def result_name(key: str) -> str:
    return f"{RESULTS_DIR}/{key}.parquet"


def write_result(store: OutputStore, key: str, row: ResultRow) -> str:
    """Commit one job's results row (atomically, under its key)."""
    table = pa.Table.from_pylist([row.to_arrow_row()], schema=ARROW_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return store.put(result_name(key), sink.getvalue().to_pybytes())


def read_results(store: OutputStore) -> pa.Table:
    """Every results row under the output root (an empty table when there are none)."""
    if not store.exists(RESULTS_DIR):
        return ARROW_SCHEMA.empty_table()
    # pyarrow skips the hidden ".partial" files of writes in flight.
    return pq.read_table(store.path(RESULTS_DIR), filesystem=store.fs, schema=ARROW_SCHEMA)
