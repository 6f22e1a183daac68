"""``python -m audio_maas.client --check --url URL``: the deployment check ``helm test`` runs."""

from __future__ import annotations

import sys

from audio_maas.client.check import main

sys.exit(main())
