"""Ray Serve endpoint speaking the OpenAI-style /v1/videos API (see docs/serve.md).

protocol (wire models) -> routes (FastAPI, thin) -> service (queue, dispatch, recovery)
-> jobs (the store) <- worker (JobRunner on a loaded engine) ; intake maps requests onto
ManifestRow; security holds auth, body limits and the remote-URL policy; app wires Serve.
"""
