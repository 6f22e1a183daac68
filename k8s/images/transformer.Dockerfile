# The transformer image: audio decoding and features (librosa), no TensorFlow.
#   podman build -f k8s/images/transformer.Dockerfile -t ghcr.io/audio-maas/transformer:0.1.0 .
# BASE must carry Python 3.11 with venv; PIP_CERT names a CA bundle in the build context for a TLS proxy.
ARG BASE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG PIP_CERT=
COPY pyproject.toml README.md ${PIP_CERT} /src/
# Only the layers the transformer runs on (audio_maas/__init__.py names them); the client is the
# deployment check `helm test` runs in this image.
COPY audio_maas/__init__.py /src/audio_maas/
COPY audio_maas/protocol /src/audio_maas/protocol
COPY audio_maas/features /src/audio_maas/features
COPY audio_maas/serving /src/audio_maas/serving
COPY audio_maas/kserve /src/audio_maas/kserve
COPY audio_maas/transformer /src/audio_maas/transformer
COPY audio_maas/client /src/audio_maas/client
COPY audio_maas/images /src/audio_maas/images
# Start-up work done once, here: running the front end's own path (log-mel and MFCC, any rate)
# and importing the server writes bytecode for exactly the modules serving uses (compiling all
# of them would add 200 MB), and compiles librosa's numba kernels. numba reads a cache only from
# a directory it can write, so each start copies it to /tmp.
# Before that, KServe is slimmed (audio_maas.images.slim_kserve.slim_kserve) so that importing it needs
# neither the Kubernetes client nor pandas, and librosa (audio_maas.images.slim_librosa.slim_librosa)
# so that librosa.effects needs no scikit-learn; out go those and the installed packages serving
# never imports (found by serving every path, REST and gRPC, with PYTHONPROFILEIMPORTTIME, which
# logs lazy imports too), and the packages' own test suites (`tests` folders, 32 MB); the imports
# below then fail the build if serving still needed one. Last, the symbol tables of the largest
# native library go. `make test-images` checks that the image still answers as the model does.
RUN apt-get update && apt-get install --yes --no-install-recommends binutils && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv \
 && PIP_CERT=${PIP_CERT:+/src/$(basename ${PIP_CERT})} /opt/venv/bin/pip install --no-cache-dir --no-compile "/src[transformer]" \
 && PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python -c "from audio_maas.images.slim_kserve import slim_kserve; slim_kserve(); \
from audio_maas.images.slim_librosa import slim_librosa; slim_librosa()" \
 && /opt/venv/bin/pip uninstall --yes --quiet kubernetes durationpy oauthlib requests-oauthlib websocket-client \
      pandas pytz tzdata pillow cryptography PyJWT uvloop aiohttp aiohttp-retry aiohappyeyeballs \
      aiosignal frozenlist multidict propcache yarl scikit-learn pip \
 && find /opt/venv/lib/python3.11/site-packages -type d -name tests -prune -exec rm -rf {} + \
 && NUMBA_CACHE_DIR=/opt/numba-cache /opt/venv/bin/python -c "import numpy as np; \
from audio_maas.features.frontend import FrontEnd; from audio_maas.features.spec import FeatureSpec; \
[FrontEnd(FeatureSpec(feature=f)).from_waveform(waveform=np.random.rand(44100).astype(np.float32) - 0.5, sample_rate=44100) \
 for f in ('log_mel', 'mfcc')]; import audio_maas.transformer.model, audio_maas.kserve.server, audio_maas.kserve.repository, kserve.model_server" \
 && find /opt/venv -name 'libllvmlite.so' -exec strip --strip-unneeded {} +

FROM ${BASE}
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin audio-maas
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/numba-cache /opt/numba-cache
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 NUMBA_CACHE_DIR=/tmp/numba-cache
USER 10001
# KServe's container contract: REST on 8080, gRPC on 8081, the model under /mnt/models.
EXPOSE 8080 8081
ENTRYPOINT ["/bin/sh", "-c", "cp -R /opt/numba-cache /tmp/ 2>/dev/null; exec python -m audio_maas.transformer \"$@\"", "transformer"]
