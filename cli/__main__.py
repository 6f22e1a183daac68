"""``python -m cli``: the same as the ``audio-maas`` command."""

from __future__ import annotations

import sys

from cli import main

sys.exit(main())
