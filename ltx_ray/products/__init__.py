"""Product-catalogue features over the batch path: recipes (product rows -> jobs) and the
run's review page.

Rule: imports schema, storage and errors; the batch layer imports it, never the reverse.
"""
