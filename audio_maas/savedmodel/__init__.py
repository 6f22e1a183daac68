"""A SavedModel's serving function, loaded one way for the predictor and for training
(``load``), and saliency over it (``explain``). Imports ``protocol`` alone of ours; no server."""
