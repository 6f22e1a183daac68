"""``python -m audio_maas.cli``: the same as the ``audio-maas`` command."""

from __future__ import annotations

import sys

from audio_maas.cli import main

sys.exit(main())
