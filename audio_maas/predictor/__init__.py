"""KServe custom predictor hosting the exported TensorFlow SavedModel."""
