"""``audio-maas predict``: send audio files to the service with a stock V2 client (tritonclient)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

__all__ = ["Prediction", "ServiceUnreachable", "predict_files"]


class ServiceUnreachable(ConnectionError):
    """Nothing answers at the URL."""


@dataclass(frozen=True)
class Prediction:
    path: Path
    label: str
    top: list[tuple[int, float]]
    """The most probable class ids with their probabilities, best first (the first is ``label``'s)."""


def predict_files(paths: Sequence[Path], *, url: str, model_name: str, top_k: int = 3) -> list[Prediction]:
    """One request carrying every file as a BYTES element, sent with the binary data extension.

    Raises :class:`ServiceUnreachable` when nothing answers, and ``RuntimeError`` with the
    server's message when it refuses the request.
    """
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    parts = urlsplit(url if "://" in url else f"http://{url}")
    client = http.InferenceServerClient(parts.netloc, ssl=parts.scheme == "https", connection_timeout=5)
    files = np.array([path.read_bytes() for path in paths], dtype=object)
    audio = http.InferInput("audio", [len(files)], "BYTES")
    audio.set_data_from_numpy(files, binary_data=True)
    outputs = [http.InferRequestedOutput(name, binary_data=True) for name in ("label", "probabilities")]
    try:
        result = client.infer(model_name, [audio], outputs=outputs)
    except InferenceServerException as error:
        raise RuntimeError(error.message()) from None
    except (ConnectionError, OSError) as error:
        raise ServiceUnreachable(f"cannot reach {url} ({error}); is `audio-maas serve` running?") from None
    finally:
        client.close()
    labels = [label.decode() for label in result.as_numpy("label")]
    probabilities = result.as_numpy("probabilities")
    return [
        Prediction(path=path, label=label, top=[(int(i), float(row[i])) for i in np.argsort(row)[::-1][:top_k]])
        for path, label, row in zip(paths, labels, probabilities, strict=True)
    ]
