"""The V2 contract, the error table and the tensor codec: what every layer shares. Imports no
other layer of ours, and nothing of KServe, TensorFlow or librosa."""
