"""One job end to end, shared by batch runs and the Serve app: fetch its inputs, generate,
mux, check quality, upload, record. ``build.build_runner`` is the one place an engine and a
runner are put together.

Rule: knows no Ray and no HTTP; imports schema, storage, engine (its types, and the engine
only through ``build``) and errors.
"""
