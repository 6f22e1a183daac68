# The transformer image: audio decoding and features (librosa), no TensorFlow.
#   podman build -f k8s/images/transformer.Dockerfile -t ghcr.io/audio-maas/transformer:0.1.0 .
# BASE must carry Python 3.11 with venv; PIP_CERT names a CA bundle in the build context for a TLS proxy.
ARG BASE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG PIP_CERT=
COPY pyproject.toml README.md ${PIP_CERT} /src/
COPY serving /src/serving
COPY transformer /src/transformer
RUN python3 -m venv /opt/venv \
 && PIP_CERT=${PIP_CERT:+/src/$(basename ${PIP_CERT})} /opt/venv/bin/pip install --no-cache-dir --no-compile "/src[transformer]"

FROM ${BASE}
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin audio-maas
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 NUMBA_CACHE_DIR=/tmp
USER 10001
# KServe's container contract: REST on 8080, gRPC on 8081, the model under /mnt/models.
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "transformer"]
