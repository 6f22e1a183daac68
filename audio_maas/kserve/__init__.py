"""Everything that touches KServe: the one layer that imports its internals (see README.md)."""

__all__ = ["KSERVE_VERSION"]

KSERVE_VERSION = "0.21.0"
"""The KServe release our patches (``patches``) and the image builds' rewrites
(``audio_maas.images.slim_kserve``) were written against; the pin in pyproject.toml."""
