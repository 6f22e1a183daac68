"""V2 calls to the service with a stock client (tritonclient) and the standard library alone: no
server, TensorFlow or librosa. ``pip install 'audio-maas[client]'`` is all ``audio-maas predict`` needs."""
