"""audio-maas: audio models served as a service on KServe.

One package, laid out by layer; each layer's README says what it may import, and
``tests/test_layers.py`` holds every module to it:

- ``protocol``: the V2 contract, the error table, the tensor codec, requests and responses (no KServe);
- ``features``: the audio front end and segmentation, shared by training and serving;
- ``savedmodel``: loading a SavedModel's serving function and explaining it;
- ``serving``: what a served model is, batching, settings, stream metrics (no framework);
- ``kserve``: the adapter, the one layer that touches KServe and the wire: our models as KServe's,
  patches, middleware, auth, metrics, repository, streams, the predictor client and the one
  server bootstrap;
- ``transformer`` and ``predictor``: the two servers' models, framework-free;
- ``client``: V2 calls with tritonclient, nothing of the servers';
- ``training``, ``deploy``, ``cli``: training and export, the chart and the cluster, the command line;
- ``images``: rewrites of installed packages run when the images are built, never at run time.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHECKOUT"]

CHECKOUT = Path(__file__).resolve().parent.parent
"""The source checkout this package runs from: ``models/``, ``helm/`` and ``bench/`` lie there."""
