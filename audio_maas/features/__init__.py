"""The audio front end shared by training and serving: its settings (``spec``), decoding
(``audio``), conditioning and features (``frontend``), the cutting of long recordings into
sounds (``segment``); for models we did not train, their input windows and time axis
(``interface``) and the outputs read from their outputs (``readers``). Imports ``protocol``
alone of ours; no server, no TensorFlow."""
