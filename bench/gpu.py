"""The bundled models' batch throughput on a GPU, with the same weights the predictor serves.

    .venv/bin/python bench/gpu.py prepare --out DIR      # here: needs TensorFlow and the data
    python3 bench/gpu.py measure --dir DIR [--json FILE]  # on the GPU machine: needs Keras 3 and JAX

Why two steps: the GPU machine this was measured on has JAX and PyTorch with CUDA 13 but no
TensorFlow and no network, and TensorFlow's CUDA build (about 600 MB, plus CUDA 12 libraries) is
too large to carry there. So ``prepare`` rebuilds each bundled model in Keras from its SavedModel's
variables (checking that it answers exactly as the SavedModel does), saves it as a backend-free
``.keras`` file with real features (FSDD test clips; ESC-10 fold 1 for ``sounds``) and the
SavedModel's answers to them, and times the SavedModel on this machine's CPU at each batch size.
``measure`` loads each ``.keras`` with Keras's JAX backend, checks its answers on the GPU against
the SavedModel's (largest probability difference, top-1 agreement), and times ``predict_on_batch``
(host to GPU and back, as a server pays it) at each batch size.

It measures the model's arithmetic on the GPU, not the predictor's TensorFlow GPU path.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODELS = ("digits", "digits-lstm", "sounds")
BATCH_SIZES = (1, 8, 32, 128, 512, 2048)
CLIPS = 256  # real clips per model; bigger batches repeat them


def _time_per_batch(call: Any, features: np.ndarray, batch: int, *, budget_s: float = 1.0) -> float:
    """Median seconds of ``call`` on ``batch`` clips, after warm-up, over about ``budget_s``."""
    inputs = np.resize(features, (batch, *features.shape[1:])).astype(np.float32)
    for _ in range(3):
        call(inputs)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 500):
        started = time.perf_counter()
        call(inputs)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def _throughput(call: Any, features: np.ndarray) -> dict[str, dict[str, float]]:
    table = {}
    for batch in BATCH_SIZES:
        seconds = _time_per_batch(call, features, batch)
        table[str(batch)] = {"ms_per_batch": seconds * 1000, "clips_per_s": batch / seconds}
        print(f"    batch {batch:5d}: {seconds * 1000:8.2f} ms  {batch / seconds:10.0f} clips/s", flush=True)
    return table


def _real_features(name: str, data_dir: Path) -> np.ndarray:
    from audio_maas.features.frontend import FrontEnd
    from audio_maas.features.spec import FeatureSpec
    from audio_maas.training.dataset import load_dataset, load_fsdd, select_split

    if name == "sounds":
        clips = [u for u in load_dataset(data_dir / "esc10").utterances if u.speaker.startswith("fold1")]
    else:
        clips = select_split(load_fsdd(data_dir / "fsdd"), "test")
    front_end = FrontEnd(FeatureSpec.read(REPO / "models" / name))
    return np.stack([front_end.from_bytes(data=u.data, max_duration_s=60) for u in clips[:CLIPS]])


def _rebuild(model_dir: Path) -> Any:
    """The Keras model of ``audio_maas.training.models`` with the SavedModel's variables, matched by name."""
    import keras
    import tensorflow as tf

    from audio_maas.features.spec import FeatureSpec
    from audio_maas.protocol.model_dir import read_labels
    from audio_maas.training.config import recorded_cnn_filters
    from audio_maas.training.models import build_model

    keras.utils.clear_session()  # layer names restart, so that they match the saved variables'
    spec = FeatureSpec.read(model_dir)
    config = json.loads((model_dir / "training.json").read_text())["config"]
    placeholder = np.zeros((2, *spec.feature_shape), np.float32)
    model = build_model(
        arch=config["arch"],
        train_features=placeholder,
        n_classes=len(read_labels(model_dir)),
        cnn_filters=recorded_cnn_filters(config),
    )
    saved = {v.name.removesuffix(":0"): v for v in tf.saved_model.load(str(model_dir)).variables}
    for weight in model.weights:
        weight.assign(saved[weight.path].numpy())
    model.get_layer("normalize").finalize_state()  # it caches mean and variance when adapted
    return model


def prepare(out: Path, data_dir: Path) -> None:
    import tensorflow as tf

    from audio_maas.protocol.contract import INPUT_NAME, OUTPUT_NAME
    from audio_maas.savedmodel.load import load_serving_function

    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": "CPU where prepare ran", "threads": "TensorFlow's defaults", "models": {}}
    for name in MODELS:
        model_dir = REPO / "models" / name
        features = _real_features(name, data_dir)
        serve = load_serving_function(model_dir)

        def saved_model(x: np.ndarray, serve: Any = serve) -> np.ndarray:
            return serve(**{INPUT_NAME: tf.constant(x)})[OUTPUT_NAME].numpy()

        reference = saved_model(features)
        model = _rebuild(model_dir)
        difference = float(np.abs(model.predict(features, verbose=0) - reference).max())
        if difference > 1e-5:
            raise RuntimeError(f"{name}: the rebuilt Keras model differs from the SavedModel by {difference:.2g}")
        model.save(out / f"{name}.keras")
        np.save(out / f"{name}-features.npy", features)
        np.save(out / f"{name}-reference.npy", reference)
        print(f"{name}: {len(features)} clips {features.shape[1:]}, SavedModel on this CPU:", flush=True)
        report["models"][name] = _throughput(saved_model, features)
    (out / "cpu.json").write_text(json.dumps(report, indent=2))


def measure(directory: Path) -> dict[str, Any]:
    import importlib
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    backend = keras.backend.backend()
    report: dict[str, Any] = {
        "backend": f"keras {keras.__version__} on {backend} {importlib.import_module(backend).__version__}",
        "models": {},
    }
    if backend == "jax":
        import jax

        report["devices"] = [str(d) for d in jax.devices()]
    print(report, flush=True)
    for name in MODELS:
        model = keras.saving.load_model(directory / f"{name}.keras", compile=False)
        features = np.load(directory / f"{name}-features.npy")
        reference = np.load(directory / f"{name}-reference.npy")
        answers = np.asarray(model.predict_on_batch(features))
        parity = {
            "max_abs_difference": float(np.abs(answers - reference).max()),
            "top1_agreement": float(np.mean(answers.argmax(1) == reference.argmax(1))),
        }
        print(f"{name}: against the SavedModel on CPU {parity}", flush=True)
        report["models"][name] = {"parity": parity, "batches": _throughput(model.predict_on_batch, features)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    step = steps.add_parser("prepare")
    step.add_argument("--out", type=Path, required=True)
    step.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    step = steps.add_parser("measure")
    step.add_argument("--dir", type=Path, required=True)
    step.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.out, args.data_dir)
    else:
        report = measure(args.dir)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
