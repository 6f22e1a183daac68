"""audio-maas: audio models served as a service on KServe.

One package, laid out by layer; each layer's README says what it may import, and
``tests/test_layers.py`` holds every module to it:

- ``protocol``: the V2 contract, the error table and the tensor codec (no KServe);
- ``features``: the audio front end and segmentation, shared by training and serving;
- ``savedmodel``: loading a SavedModel's serving function and explaining it;
- ``kserve``: everything that touches KServe: patches, middleware, auth, metrics, repository,
  batching, settings and the one server bootstrap;
- ``transformer`` and ``predictor``: the two servers;
- ``client``: V2 calls with tritonclient, nothing of the servers';
- ``training``, ``deploy``, ``cli``: training and export, the chart and the cluster, the command line;
- ``images``: rewrites of installed packages run when the images are built, never at run time.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHECKOUT"]

CHECKOUT = Path(__file__).resolve().parent.parent
"""The source checkout this package runs from: ``models/``, ``helm/`` and ``bench/`` lie there."""
