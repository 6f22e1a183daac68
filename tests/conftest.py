"""Shared fixtures: the real FSDD recordings and synthetic test signals."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import soundfile

from audio_maas.cli.local import LocalService
from audio_maas.client.check import wait_ready as client_wait_ready
from audio_maas.features.frontend import FrontEnd
from audio_maas.features.spec import FeatureSpec
from audio_maas.images.patching import installed_package
from audio_maas.protocol.model_dir import read_labels
from audio_maas.serving.settings import ServiceSettings

REPO = Path(__file__).resolve().parent.parent
FSDD_DIR = Path(os.environ.get("AUDIO_MAAS_DATA_DIR", REPO.parent / "shared" / "data" / "fsdd")).resolve()
BUNDLED_MODEL = REPO / "models" / "digits"
BUNDLED_LABELS = read_labels(BUNDLED_MODEL)
SHARED_DATA = FSDD_DIR.parent
"""``../shared/data``: ESC-10 and Speech Commands beside FSDD."""


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    if not (FSDD_DIR / "recordings").is_dir():
        pytest.fail(f"FSDD not found at {FSDD_DIR}; set AUDIO_MAAS_DATA_DIR")
    return FSDD_DIR


@pytest.fixture(scope="session")
def test_split(fsdd_dir: Path) -> list[Any]:
    """FSDD's official test split (index 0-4 of every speaker): 300 ``Utterance``s."""
    from audio_maas.training.dataset import load_fsdd, select_split

    return select_split(load_fsdd(fsdd_dir), "test")


@pytest.fixture(scope="session")
def offline_probabilities(test_split: list[Any]) -> np.ndarray:
    """What the exported bundled model answers for each file of ``test_split``, computed in process:
    float32 ``[300, classes]``, the reference every served answer is held to."""
    from audio_maas.training.evaluate import predict
    from audio_maas.training.featurise import featurise

    return predict(BUNDLED_MODEL, featurise(test_split, FeatureSpec.read(BUNDLED_MODEL)))


@pytest.fixture(scope="session")
def spec() -> FeatureSpec:
    return FeatureSpec()


@pytest.fixture(scope="session")
def front_end(spec: FeatureSpec) -> FrontEnd:
    return FrontEnd(spec)


def tone(*, frequency_hz: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A sine: float32 [samples] at ``sample_rate`` Hz."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)


def encode(waveform: np.ndarray, *, sample_rate: int, format: str, subtype: str | None = None) -> bytes:
    """Encode float [samples] or [samples, channels] as an audio file in memory."""
    buffer = io.BytesIO()
    soundfile.write(buffer, waveform, sample_rate, format=format, subtype=subtype)
    return buffer.getvalue()


_HANDED_OUT: set[int] = set()
"""Ports given to earlier callers: free now, but about to be taken by the servers they start."""


def patched_copy(root: Path, package: str, patch: Callable[[Path], None]) -> Path:
    """``root``, now holding a copy of the installed ``package`` with ``patch`` applied as an image
    build applies it to the installed one: pass it to :func:`run_python` as ``first_on_path``."""
    shutil.copytree(installed_package(package), root / package, ignore=shutil.ignore_patterns("__pycache__"))
    patch(root / package)
    return root


def run_python(code: str, *args: str, first_on_path: Path | None = None, **environment: str) -> str:
    """The stdout of ``code`` run with ``args`` in a fresh interpreter from the repository, importing
    from ``first_on_path`` (a patched copy of a package, say) before anything installed; ``environment``
    is added to this process's. Fails the test with the interpreter's stderr when it fails."""
    search_path = [str(first_on_path)] if first_on_path else []
    search_path += [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env={**os.environ, **environment, "PYTHONPATH": os.pathsep.join(search_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


AS_SERVED = """
import sys
from pathlib import Path
import numpy as np
from audio_maas.predictor.settings import PredictorSettings
from audio_maas.savedmodel.explain import explainer
from audio_maas.savedmodel.load import load_serving_function, load_signature, set_threads
model_dir, rows, out, explained = *map(Path, sys.argv[1:4]), sys.argv[4] == "explained"
settings = PredictorSettings(model_dir=model_dir)
set_threads(intra_op=settings.intra_op_threads, inter_op=settings.inter_op_threads)
if explained:
    probabilities, saliency = explainer(load_serving_function(model_dir))(np.load(rows))
    answered = {"probabilities": probabilities, "saliency": saliency}
else:
    answered = load_signature(model_dir)(features=np.load(rows))
np.savez(out, **{name: value.numpy() for name, value in answered.items()})
"""


def outputs_as_served(
    model_dir: Path, rows: np.ndarray, scratch: Path, *, explained: bool = False
) -> dict[str, np.ndarray]:
    """The model's outputs for ``rows`` in one call (``explained``: probabilities and saliency, as
    ``audio_maas.savedmodel.explain`` computes them), computed as a predictor with default settings
    computes them: in a fresh process with its thread pools, so the same kernels make the same
    sums and a served response must equal these bit for bit (a process with other thread pools may
    round differently: see ``audio_maas.savedmodel.load.set_threads``)."""
    np.save(scratch / "as-served-rows.npy", rows)
    run_python(
        AS_SERVED, str(model_dir), str(scratch / "as-served-rows.npy"), str(scratch / "as-served.npz"),
        "explained" if explained else "plain",
    )  # fmt: skip
    with np.load(scratch / "as-served.npz") as outputs:
        return dict(outputs)


def assert_distributions(probabilities: np.ndarray) -> None:
    """Each row of float32 softmax ``probabilities`` ``[n, classes]`` sums to 1 within the rounding
    of its terms: each of the ``classes`` terms and the normalisation rounds by at most an eps."""
    rows = np.asarray(probabilities, dtype=np.float64).reshape(-1, np.shape(probabilities)[-1])
    np.testing.assert_allclose(rows.sum(axis=1), 1, rtol=0, atol=(rows.shape[1] + 2) * np.finfo(np.float32).eps)


def chain_bound(fan_ins: Iterable[int]) -> float:
    """The relative float32 rounding a network's outputs may carry between CPU kernels that sum in
    another order: ``2 n u`` (forward and back), the classical bound ``n u`` for a chain of dot
    products of total length ``n`` (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1),
    ``n`` the sum of the ``fan_ins`` of its layers."""
    return 2 * sum(fan_ins) * 2.0**-24


def rounding_bound(model_dir: Path) -> float:
    """:func:`chain_bound` of an exported model of ours: its kernels' fan-ins, a recurrent kernel's
    once per frame; for a head on Whisper's encoder (waveform features), the encoder's chain too:
    the STFT and mel sums, each weight's fan-in (CTranslate2's layout: ``[out, in, ...]``), each
    layer norm's sums, and each attention's two products (over the width and over the rows)."""
    import tensorflow as tf

    spec = FeatureSpec.read(model_dir)
    frames = int(np.ceil(spec.clip_s * spec.sample_rate / spec.hop_length)) + 1
    loaded = tf.saved_model.load(str(model_dir))  # holds the variables the signature reads
    variables = loaded.signatures["serving_default"].variables
    kernels = [v for v in variables if v.name.endswith("kernel:0")]
    fan_ins = [int(np.prod(v.shape[:-1])) * (frames if "recurrent" in v.name else 1) for v in kernels]
    if spec.feature == "waveform":
        rows = -(-spec.clip_samples // 320)
        fan_ins += [400, 201]  # a 25 ms STFT window; 201 frequency bins into each mel band
        for v in variables:
            if v.name.startswith("encoder/") and v.name.endswith("weight:0"):
                fan_ins.append(int(np.prod(v.shape[1:])))
            if v.name.endswith("layer_norm/gamma:0"):
                fan_ins.append(2 * int(v.shape[0]))
            if v.name.endswith("self_attention/linear_1/weight:0"):
                fan_ins.append(int(v.shape[1]) + rows)
    return chain_bound(fan_ins)


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each pretrained model's name -> (its unpacked archive, its converted model directory)."""
    from audio_maas.pretrained.archives import ARCHIVES, fetch
    from audio_maas.pretrained.convert import convert

    out = tmp_path_factory.mktemp("pretrained")
    models = {}
    for name, archive in ARCHIVES.items():
        unpacked = fetch(archive, REPO / "build" / "pretrained-archives")
        convert(name, unpacked, out / name)
        models[name] = (unpacked, out / name)
    return models


def free_port_pair() -> int:
    """A loopback port ``p`` with ``p + 1`` free too: REST on one, gRPC on the next, as ``serve`` does.
    Never a port handed out before in this session, so two pairs asked for in a row cannot overlap."""
    import socket

    for _ in range(100):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if {port, port + 1} & _HANDED_OUT:
                continue
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            _HANDED_OUT.update((port, port + 1))
            return port
    raise RuntimeError("no two consecutive free ports")


def wait_ready(url: str, *, process: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    """Until ``url`` answers 200: RuntimeError if ``process`` exits first, TimeoutError after ``timeout_s``."""
    pending = client_wait_ready([url], timeout_s=timeout_s, stop=lambda: process.poll() is not None)
    if process.poll() is not None:
        raise RuntimeError(f"server exited with {process.returncode} before it was ready")
    if pending:
        raise TimeoutError(f"{url} not ready after {timeout_s} s")


def loopback_settings(**fields: object) -> ServiceSettings:
    """The service's settings on free loopback port pairs."""
    return ServiceSettings(http_port=free_port_pair(), predictor_http_port=free_port_pair(), **fields)  # type: ignore[arg-type]


@contextmanager
def running_service(
    settings: ServiceSettings,
    *extra: str,
    models: Sequence[str] = ("--model", str(BUNDLED_MODEL)),
    env: dict[str, str] | None = None,
    output: IO[bytes] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``audio-maas serve`` of ``models`` (its model flags; default: the bundled model) as
    ``settings`` say, with ``extra`` flags, until both servers report every model ready; SIGTERM
    when the block ends."""
    command = [sys.executable, "-m", "audio_maas.cli", "serve", *models]
    command += ["--http-port", str(settings.http_port), "--predictor-port", str(settings.predictor_http_port)]
    command += ["--predictor-protocol", settings.predictor_protocol, *extra]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    process = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT if output else None)
    try:
        for url in LocalService(models={settings.model_name: BUNDLED_MODEL}, settings=settings).ready_urls().values():
            wait_ready(url, process=process)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def service() -> Iterator[ServiceSettings]:
    """The real two-process service (``audio-maas serve``) on free loopback ports."""
    settings = loopback_settings()
    with running_service(settings):
        yield settings
