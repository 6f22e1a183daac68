# The predictor image: the TensorFlow SavedModel behind KServe's V2 server.
#   podman build -f k8s/images/predictor.Dockerfile -t ghcr.io/audio-maas/predictor:0.1.0 .
#   podman build -f k8s/images/predictor.Dockerfile --build-arg EXTRA=predictor-gpu \
#       -t ghcr.io/audio-maas/predictor:0.1.0-gpu .     # TensorFlow's CUDA build
# BASE must carry Python 3.11 with venv; PIP_CERT names a CA bundle in the build context for a TLS proxy.
ARG BASE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG PIP_CERT=
ARG EXTRA=predictor
COPY pyproject.toml README.md ${PIP_CERT} /src/
# Only the layers the predictor runs on (audio_maas/__init__.py names them).
COPY audio_maas/__init__.py /src/audio_maas/
COPY audio_maas/protocol /src/audio_maas/protocol
COPY audio_maas/savedmodel /src/audio_maas/savedmodel
COPY audio_maas/serving /src/audio_maas/serving
COPY audio_maas/kserve /src/audio_maas/kserve
COPY audio_maas/predictor /src/audio_maas/predictor
COPY audio_maas/images /src/audio_maas/images
# KServe is slimmed (audio_maas.images.slim_kserve.slim_kserve) so that importing it needs neither the
# Kubernetes client nor pandas, and TensorFlow (audio_maas.images.slim_tensorflow.slim_tensorflow) so
# that importing it leaves the public API's submodules until first use. Out go the installed
# packages serving never imports (found by serving every path with PYTHONPROFILEIMPORTTIME, which
# logs lazy imports too). Keras is one: TensorFlow imports it when it is there (0.15-0.2 s of each
# start) and goes on without it, and tf.saved_model.load needs none of it; without Keras, nothing
# imports pillow either. The packages' own test suites (`tests` folders, 10 MB) go too. Then
# bytecode for exactly the modules serving imports, written here by importing them and running the
# predictor's calls, not at every start on a read-only root (compiling every module would add
# hundreds of MB); those imports fail the build if serving still needed a package that went. Last,
# TensorFlow's C++ headers (287 MB) and the symbol tables of its libraries (over 200 MB), which only
# debuggers and linkers read.
# `make test-images` checks that the image still answers as the model does.
RUN apt-get update && apt-get install --yes --no-install-recommends binutils && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv \
 && PIP_CERT=${PIP_CERT:+/src/$(basename ${PIP_CERT})} /opt/venv/bin/pip install --no-cache-dir --no-compile "/src[${EXTRA}]" \
 && PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python -c "from audio_maas.images.slim_kserve import slim_kserve; slim_kserve(); \
from audio_maas.images.slim_tensorflow import slim_tensorflow; slim_tensorflow()" \
 && /opt/venv/bin/pip uninstall --yes --quiet kubernetes durationpy oauthlib requests-oauthlib websocket-client \
      pandas pytz tzdata keras namex optree rich markdown-it-py mdurl pygments pillow libclang google-pasta \
      cryptography PyJWT uvloop aiohttp aiohttp-retry aiohappyeyeballs aiosignal frozenlist multidict propcache \
      yarl wheel pip \
 && find /opt/venv/lib/python3.11/site-packages -type d -name tests -prune -exec rm -rf {} + \
 && /opt/venv/bin/python -c "import tempfile, tensorflow as tf; \
import audio_maas.predictor.model, audio_maas.kserve.server, audio_maas.kserve.repository, kserve.model_server; \
tf.config.threading.get_intra_op_parallelism_threads(); tf.config.experimental.list_physical_devices(); \
m = tf.Module(); m.f = tf.function(lambda x: 2 * x, input_signature=[tf.TensorSpec([None], tf.float32)]); \
d = tempfile.mkdtemp(); tf.saved_model.save(m, d); tf.saved_model.load(d).f(tf.zeros([1]))" \
 && rm -rf /opt/venv/lib/python3.11/site-packages/tensorflow/include \
 && find /opt/venv/lib/python3.11/site-packages/tensorflow -name '*.so*' -type f -exec strip --strip-unneeded {} +

FROM ${BASE}
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin audio-maas
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 TF_CPP_MIN_LOG_LEVEL=2
USER 10001
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "audio_maas.predictor"]
