"""The two container images, built for real and run on loopback like a pod runs them.

Behind the ``container`` marker: ``make test-images`` builds both images (k8s/images/build.sh)
and runs this; it takes about 4 minutes here. Each container runs as its image's non-root user
with a read-only root filesystem, no capabilities and the model mounted read-only at
/mnt/models, as the chart asks of Kubernetes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from audio_maas.client.check import check_deployment
from audio_maas.training.dataset import Utterance
from bench.containers import PODMAN, podman, run_container, run_flags
from tests.conftest import BUNDLED_LABELS, assert_distributions, free_port_pair, wait_ready
from tests.test_service import GRPC_CLIENT, _infer_files

pytestmark = pytest.mark.container

TAG = "0.1.0"
IMAGES = {name: f"ghcr.io/audio-maas/{name}:{TAG}" for name in ("transformer", "predictor")}


@pytest.fixture(scope="module")
def transformer_url() -> Iterator[str]:
    for image in IMAGES.values():
        assert subprocess.run([PODMAN, "image", "exists", image]).returncode == 0, f"build {image}: make test-images"
    transformer_port, predictor_port = free_port_pair(), free_port_pair()
    names = {
        "predictor": f"audio-maas-test-predictor-{predictor_port}",
        "transformer": f"audio-maas-test-{transformer_port}",
    }
    try:
        run_container(names["predictor"], IMAGES["predictor"], "--model_name", "digits",
             "--http_port", str(predictor_port), "--grpc_port", str(predictor_port + 1))  # fmt: skip
        run_container(names["transformer"], IMAGES["transformer"], "--model_name", "digits", "--workers", "1",
             "--http_port", str(transformer_port), "--grpc_port", str(transformer_port + 1),
             "--predictor_host", f"127.0.0.1:{predictor_port}", "--predictor_protocol", "v2")  # fmt: skip
        url = f"http://127.0.0.1:{transformer_port}"
        logs = subprocess.Popen([PODMAN, "logs", "--follow", names["transformer"]], stdout=subprocess.DEVNULL)
        wait_ready(f"{url}/v2/models/digits/ready", process=logs, timeout_s=120)
        logs.terminate()
        yield url
    finally:
        for name in names.values():
            subprocess.run([PODMAN, "rm", "--force", name], capture_output=True)


def test_images_run_as_non_root() -> None:
    for image in IMAGES.values():
        assert podman("image", "inspect", "--format", "{{.Config.User}}", image) == "10001"


def test_images_leave_out_what_serving_does_not_import() -> None:
    """KServe imports neither the Kubernetes client nor pandas in the images
    (``audio_maas.images.slim_kserve.slim_kserve``), librosa's effects no scikit-learn
    (``audio_maas.images.slim_librosa.slim_librosa``), and TensorFlow goes on without Keras."""
    left_out = ("kubernetes", "pandas", "keras", "sklearn")
    look = f"import importlib.util as u; print([n for n in {left_out} if u.find_spec(n)])"
    for image in IMAGES.values():
        found = podman("run", "--rm", *run_flags(), "--entrypoint", "python", image, "-c", look)
        assert found == "[]", image


def test_predictor_image_imports_tensorflow_api_on_first_use() -> None:
    """TensorFlow is slimmed in the image (``audio_maas.images.slim_tensorflow.slim_tensorflow``)."""
    look = (
        "import sys, tensorflow as tf; api = 'tensorflow._api.v2.'; before = api + '__internal__' in sys.modules;"
        " tf.__internal__; print(before, api + '__internal__' in sys.modules)"
    )
    found = podman("run", "--rm", *run_flags(), "--entrypoint", "python", IMAGES["predictor"], "-c", look)
    assert found.splitlines()[-1] == "False True"


def test_containers_answer_the_whole_test_split_as_the_exported_model_does(
    transformer_url: str, test_split: list[Utterance], offline_probabilities: np.ndarray
) -> None:
    labels, probabilities = [], []
    for start in range(0, len(test_split), 50):
        batch_labels, batch_probabilities = _infer_files(
            transformer_url, [u.data for u in test_split[start : start + 50]]
        )
        labels += batch_labels
        probabilities.append(batch_probabilities)
    # Compared decoded, as in tests/test_service.py: batches of 50 in the container against the
    # offline call's own, whose float32 sums may round differently.
    assert labels == [BUNDLED_LABELS[i] for i in offline_probabilities.argmax(axis=1)]
    assert_distributions(np.concatenate(probabilities))


def test_helm_test_check_passes_against_the_containers(transformer_url: str) -> None:
    assert check_deployment(url=transformer_url, model_name="digits", timeout_s=10) in BUNDLED_LABELS


def test_containers_answer_over_grpc_as_over_rest(
    transformer_url: str, test_split: list[Utterance], fsdd_dir: Path
) -> None:
    """The transformer container's gRPC port (REST's + 1), with tritonclient in its own process."""
    grpc_address = f"127.0.0.1:{urlsplit(transformer_url).port + 1}"  # type: ignore[operator]
    paths = [str(fsdd_dir / "recordings" / u.name) for u in test_split[:8]]
    completed = subprocess.run(
        [sys.executable, "-c", GRPC_CLIENT, grpc_address, *paths],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(completed.stdout)
    rest_labels, rest_probabilities = _infer_files(transformer_url, [u.data for u in test_split[:8]])
    assert result["label"] == rest_labels
    # The same request of 8 files, the same features and predictor batch: the same sums, bit for bit.
    np.testing.assert_array_equal(np.array(result["probabilities"], np.float32), rest_probabilities)
