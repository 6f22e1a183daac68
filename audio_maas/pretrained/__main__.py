"""``python -m audio_maas.pretrained --out DIR [--cache DIR] [--force] [NAME ...]``: fetch the pinned
archives and convert each pretrained model into ``DIR/NAME``, unless that already holds its
conversion from the pinned archive (``--force`` converts again, say after a converter changed)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from audio_maas.pretrained.archives import ARCHIVES, fetch
from audio_maas.pretrained.convert import convert
from audio_maas.protocol.model_dir import MODEL_CARD_FILE

log = logging.getLogger("audio_maas")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"of {list(ARCHIVES)}; all by default")
    parser.add_argument("--out", type=Path, required=True, help="where the model directories go")
    parser.add_argument("--cache", type=Path, default=Path("build/pretrained-archives"), help="downloaded archives")
    parser.add_argument("--force", action="store_true", help="convert models already converted too")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(ARCHIVES))
    if unknown:
        parser.error(f"no pretrained model {', '.join(unknown)}: choose from {', '.join(ARCHIVES)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in args.names or ARCHIVES:
        card = args.out / name / MODEL_CARD_FILE
        if not args.force and card.is_file() and ARCHIVES[name].sha256 in card.read_text():
            log.info("%s: %s (converted before)", name, args.out / name)
            continue
        unpacked = fetch(ARCHIVES[name], args.cache)
        convert(name, unpacked, args.out / name)
        log.info("%s: %s", name, args.out / name)


if __name__ == "__main__":
    main()
