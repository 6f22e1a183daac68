"""Rewrites of installed packages (KServe, TensorFlow, librosa) run when the images are built,
never at run time; each names the release it was written against and refuses another."""
