"""What the transformer and the predictor share: the V2 protocol as KServe serves it, fixed.

``contract`` (names export, servers and clients agree on; imports nothing heavy), ``errors``
(one table: error -> HTTP status and gRPC code), ``codec`` (V2 tensors <-> numpy, checked),
``auth``, ``asgi`` (middleware and the V2 error body), ``settings``, ``logs``, ``batching``,
``repository`` (the V2 repository extension), ``kserve_patches`` (every change to KServe's
internals), ``patching`` (what the image builds' rewrites of installed packages share) and
``server`` (the wiring).
``transformer/`` and ``predictor/`` import this package and never each other.
"""
