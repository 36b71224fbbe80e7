"""A replica: what one Ray Data actor or one Serve replica runs jobs on, shared by both ways in.

One rank (``--parallel none``): the engine and ``JobRunner`` that ``job.build.build_runner``
puts together. Several ranks (``--gpus-per-replica N --parallel MODE``, issue 18): the
caller's process is rank 0 and ``group`` starts ranks 1..N-1 as Ray actors on its node,
joined in one process group; every rank runs each clip, rank 0 alone writes.

Rule: imports schema, storage, engine (through ``job.build`` and ``engine.process_group``),
job and errors; Ray is imported here. ``batch`` and ``serve`` import it, never the reverse.
"""
