"""Which explanation is faithful: deletion curves of saliency methods on the bundled models.

    .venv/bin/python bench/explain.py [--clips 100] [--json FILE]

For each model (``digits`` on every third FSDD test clip; ``sounds`` on ESC-10 fold 1), each
method scores every frame (its saliency summed over bins); frames are then removed most salient
first (set to the clip's quietest value, as silence reads on the model's grid) in 20 steps, and
the predicted class's probability is averaged along the way: the area under that curve is lower
when the method found what the answer rests on. Random order is the floor to beat. Also the cost
per clip of each method, on this machine, with TensorFlow's default threads.

Methods: integrated gradients (``audio_maas.savedmodel.explain``, what the service answers, 8 steps; 16 for
comparison), gradient x input, and occlusion (5-frame windows set to silence, one batched call).
Grad-CAM needs a convolution layer's activations, which a SavedModel's serving signature does not
expose; it is left out, as is anything else that would not work for every exported model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.features.frontend import FrontEnd  # noqa: E402
from audio_maas.features.spec import FeatureSpec  # noqa: E402
from audio_maas.savedmodel.explain import explainer  # noqa: E402
from audio_maas.savedmodel.load import load_serving_function  # noqa: E402
from audio_maas.training.dataset import load_dataset, load_fsdd, select_split  # noqa: E402

DELETION_STEPS = 20
OCCLUSION_FRAMES = 5


def real_features(model: str, data_dir: Path, clips: int) -> np.ndarray:
    front_end = FrontEnd(FeatureSpec.read(REPO / "models" / model))
    if model == "sounds":
        recordings = [u for u in load_dataset(data_dir / "esc10").utterances if u.speaker.startswith("fold1")]
    else:
        recordings = select_split(load_fsdd(data_dir / "fsdd"), "test")[::3]
    return np.stack([front_end.from_bytes(data=u.data, max_duration_s=60) for u in recordings[:clips]])


def methods(signature: Any) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """Name -> fn(features [n, frames, bins], predicted class [n]) -> saliency [n, frames, bins]."""
    import tensorflow as tf

    def probabilities(features: np.ndarray) -> np.ndarray:
        return signature(features=tf.constant(features, tf.float32))["probabilities"].numpy()

    def gradient_x_input(features: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        point = tf.constant(features)
        with tf.GradientTape() as tape:
            tape.watch(point)
            chosen = tf.gather(signature(features=point)["probabilities"], predicted, axis=1, batch_dims=1)
        return tape.gradient(chosen, point).numpy() * (features - features.min(axis=(1, 2), keepdims=True))

    def occlusion(features: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        n, frames, bins = features.shape
        silence = features.min(axis=(1, 2), keepdims=True)
        starts = range(0, frames, OCCLUSION_FRAMES)
        occluded = np.repeat(features[:, None], len(starts), axis=1)
        for k, start in enumerate(starts):
            occluded[:, k, start : start + OCCLUSION_FRAMES] = silence
        before = probabilities(features)[np.arange(n), predicted]
        after = probabilities(occluded.reshape(-1, frames, bins)).reshape(n, len(starts), -1)
        drop = before[:, None] - np.take_along_axis(after, predicted[:, None, None], axis=2)[..., 0]
        saliency = np.zeros_like(features)
        for k, start in enumerate(starts):
            saliency[:, start : start + OCCLUSION_FRAMES] = drop[:, k, None, None] / (OCCLUSION_FRAMES * bins)
        return saliency

    served, finer = explainer(signature), explainer(signature, steps=16)
    return {
        "integrated gradients, 8 steps (served)": lambda x, _: served(tf.constant(x))[1].numpy(),
        "integrated gradients, 16 steps": lambda x, _: finer(tf.constant(x))[1].numpy(),
        "gradient x input": gradient_x_input,
        "occlusion": occlusion,
    }


def deletion_area(signature: Any, features: np.ndarray, predicted: np.ndarray, frame_scores: np.ndarray) -> float:
    """Mean area under the predicted class's probability as frames go, highest score first."""
    import tensorflow as tf

    n = len(features)
    order = np.argsort(-frame_scores, axis=1, kind="stable")
    silence = features.min(axis=(1, 2), keepdims=True)
    curve = []
    for step in range(DELETION_STEPS + 1):
        removed = features.copy()
        count = round(step / DELETION_STEPS * features.shape[1])
        for i in range(n):
            removed[i, order[i, :count]] = silence[i, 0]
        answered = signature(features=tf.constant(removed))["probabilities"].numpy()
        curve.append(answered[np.arange(n), predicted])
    return float(np.trapezoid(np.array(curve), dx=1 / DELETION_STEPS, axis=0).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {}
    for model in ("digits", "sounds"):
        signature = load_serving_function(REPO / "models" / model)
        features = real_features(model, args.data_dir, args.clips)
        predicted = signature(features=features)["probabilities"].numpy().argmax(axis=1)
        rng = np.random.default_rng(0)
        floor = [deletion_area(signature, features, predicted, rng.random(features.shape[:2])) for _ in range(3)]
        report[model] = {"clips": len(features), "random order": {"deletion_area": float(np.mean(floor))}}
        print(f"{model}, {len(features)} clips: random order, deletion area {np.mean(floor):.3f}", flush=True)
        for name, method in methods(signature).items():
            method(features[:2], predicted[:2])  # traced or warmed before it is timed
            started = time.perf_counter()
            saliency = method(features, predicted)
            ms_per_clip = (time.perf_counter() - started) / len(features) * 1000
            area = deletion_area(signature, features, predicted, saliency.sum(axis=2))
            report[model][name] = {"deletion_area": area, "ms_per_clip": ms_per_clip}
            print(f"    {name:40s} deletion area {area:.3f}   {ms_per_clip:6.1f} ms per clip", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
