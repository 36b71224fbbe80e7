"""A manifest run on Ray: the driver's story (``run.run``), the Ray Data generation stage,
progress, nightly runs and job submission.

Rule: imports the layers below (schema, storage, engine.weights, job); Ray is imported here.
"""
