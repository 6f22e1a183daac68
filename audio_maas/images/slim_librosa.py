"""Every change we make to librosa's installed files, in one place. Written against librosa 0.11.0.

- :func:`slim_librosa`, run on the installed files when the transformer image is built (not at
  run time): ``librosa.effects`` imports ``librosa.decompose`` on first use rather than at import.
  ``decompose`` imports scikit-learn (for NMF, and through ``librosa.segment`` for clustering),
  which the front end never calls: ``effects.trim`` is all it takes from ``effects``, and
  ``decompose`` serves only ``effects.hpss`` and its kin. The image then leaves scikit-learn out.

``tests/test_librosa_patches.py`` fails when an upgrade moves what this relies on.
"""

from __future__ import annotations

from pathlib import Path

from audio_maas.images.patching import installed_package, text_with_one

__all__ = ["LIBROSA_VERSION", "slim_librosa"]

LIBROSA_VERSION = "0.11.0"
"""The librosa release these patches were written against, within the range pyproject.toml allows."""

_EAGER_DECOMPOSE = "\nfrom . import decompose\n"
"""The line, at the start of a line: the patch itself imports decompose indented."""

_LAZY_DECOMPOSE = """


class _ImportedOnFirstUse:
    # Written by audio-maas's image build (audio_maas.images.slim_librosa.slim_librosa): decompose,
    # and scikit-learn with it, is imported when effects.hpss and its kin first use it. Not a
    # lazy module: code that walks sys.modules (inspect.stack does) would import it at once.
    def __getattr__(self, name):
        from . import decompose

        return getattr(decompose, name)


decompose = _ImportedOnFirstUse()


"""


def slim_librosa(package: Path | None = None) -> None:
    """Rewrite the installed librosa (``package``: its directory; the importable one by default) so
    that importing ``librosa.effects`` imports neither ``librosa.decompose`` nor scikit-learn. For
    the transformer image's build only; every function of ``librosa.effects`` still works where
    scikit-learn is installed.

    Raises ``RuntimeError`` naming the file when it does not read as librosa ``LIBROSA_VERSION``'s.
    """
    effects = (package or installed_package("librosa")) / "effects.py"
    text = text_with_one(effects, _EAGER_DECOMPOSE, release=f"librosa {LIBROSA_VERSION}")
    effects.write_text(text.replace(_EAGER_DECOMPOSE, _LAZY_DECOMPOSE))
