"""The audio front end shared by training and serving: its settings (``spec``), decoding
(``audio``), conditioning and features (``frontend``), and the cutting of long recordings into
sounds (``segment``). Imports ``protocol`` alone of ours; no server, no TensorFlow."""
