"""``audio-maas``: the command line, one module per area. Each command imports its heavy parts
only when it runs.

- :mod:`audio_maas.cli.training`: ``train``, ``evaluate``, ``cross-validate``;
- :mod:`audio_maas.cli.serving`: ``serve`` (:mod:`audio_maas.cli.local` runs the two servers), ``predict``;
- :mod:`audio_maas.cli.cluster`: ``deploy``, ``status``, ``plan``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from audio_maas.cli import cluster, serving, training

    parser = argparse.ArgumentParser(prog="audio-maas", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for area in (training, serving, cluster):
        area.add_commands(commands)

    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "takes_rest", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return int(args.run(args))
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"audio-maas {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
