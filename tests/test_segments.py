"""Long recordings (request parameter ``segment``): the segmentation on its own, then through the
real service with tritonclient over REST and gRPC, with real FSDD recordings strung together."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from audio_maas.cli import main
from audio_maas.features.audio import decode
from audio_maas.features.frontend import FrontEnd
from audio_maas.features.segment import SegmentOptions, find_segments, segment_features, segment_options
from audio_maas.features.spec import FeatureSpec
from audio_maas.serving.settings import ServiceSettings
from audio_maas.training.dataset import load_fsdd, select_split
from tests.conftest import BUNDLED_LABELS, encode, tone

RATE = 8000
DIGITS = ["3", "1", "4", "1", "5"]
"""Spoken by one FSDD test speaker, in this order, with these pauses (s) before each."""
PAUSES_S = [0.3, 0.2, 0.45, 0.15, 0.6]


@pytest.fixture(scope="module")
def sequence(fsdd_dir: Path) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Five digits by one test speaker (takes 0-4, which no bundled model trained on) with pauses,
    and where each recording lies in it (s)."""
    takes = {u.label: u for u in select_split(load_fsdd(fsdd_dir), "test") if u.speaker == "jackson" and u.index == 1}
    pieces, spans, at = [], [], 0
    for digit, pause_s in zip(DIGITS, PAUSES_S, strict=True):
        waveform = decode(data=takes[digit].data, max_duration_s=60)[0][:, 0]
        pieces += [np.zeros(int(pause_s * RATE), np.float32), waveform]
        at += int(pause_s * RATE)
        spans.append((at / RATE, (at + len(waveform)) / RATE))
        at += len(waveform)
    pieces.append(np.zeros(int(0.4 * RATE), np.float32))
    return np.concatenate(pieces), spans


def _tones(*spans_s: tuple[float, float], seconds: float = 3.0) -> np.ndarray:
    waveform = np.zeros(int(seconds * RATE), np.float32)
    for start_s, end_s in spans_s:
        waveform[int(start_s * RATE) : int(end_s * RATE)] = tone(
            frequency_hz=500, seconds=end_s - start_s, sample_rate=RATE, amplitude=0.3
        )[: int(end_s * RATE) - int(start_s * RATE)]
    return waveform


def _found_s(waveform: np.ndarray, options: SegmentOptions, max_s: float = 1.0) -> list[tuple[float, float]]:
    segments = find_segments(waveform, sample_rate=RATE, max_s=max_s, options=options)
    return [(s.start / RATE, s.end / RATE) for s in segments]


def test_sounds_are_found_where_they_are_and_close_ones_join() -> None:
    waveform = _tones((0.2, 0.6), (0.9, 1.3), (1.45, 1.7))
    found = _found_s(waveform, SegmentOptions(min_silence_s=0.2))
    np.testing.assert_allclose(found, [(0.2, 0.6), (0.9, 1.7)], atol=0.03)  # 150 ms apart: one sound
    found = _found_s(waveform, SegmentOptions(min_silence_s=0.1))
    np.testing.assert_allclose(found, [(0.2, 0.6), (0.9, 1.3), (1.45, 1.7)], atol=0.03)
    assert len(_found_s(_tones((0.2, 0.6), (0.62, 1.0)), SegmentOptions(min_silence_s=0.01))) == 1  # a dip is no gap


def test_a_sound_longer_than_the_models_clip_is_cut_and_silence_or_steady_noise_is_none() -> None:
    found = _found_s(_tones((0.1, 2.9)), SegmentOptions(), max_s=1.0)
    assert len(found) == 3 and all(end - start <= 1.0 for start, end in found)
    assert found[0][0] == pytest.approx(0.1, abs=0.03) and found[-1][1] == pytest.approx(2.9, abs=0.03)
    assert _found_s(np.zeros(3 * RATE, np.float32), SegmentOptions()) == []
    noise = np.random.default_rng(0).normal(scale=0.05, size=3 * RATE).astype(np.float32)
    assert _found_s(noise, SegmentOptions()) == []  # no word stands above the floor
    assert len(_found_s(noise, SegmentOptions(snr_db=0.0), max_s=5.0)) == 1  # as a steady sound, it is one


def test_options_come_from_the_request_and_bad_ones_name_the_parameter(spec: FeatureSpec) -> None:
    assert segment_options({}, spec) is None
    assert segment_options({"segment": True, "segment_min_silence_s": 0.25}, spec) == SegmentOptions(min_silence_s=0.25)
    sounds = FeatureSpec(**{**spec.__dict__, "clip_s": 5.0})
    assert segment_options({"segment": True}, sounds) == SegmentOptions(snr_db=0.0, min_silence_s=0.5)
    for parameters, named in [
        ({"segment": "yes"}, "'segment' must be true or false"),
        ({"segment": True, "segment_snr_db": -1}, "'segment_snr_db': Input should be greater than or equal to 0"),
        ({"segment": True, "segment_snr_db": "10"}, "'segment_snr_db': Input should be a valid number"),
        ({"segment": True, "segment_colour": 1}, "'segment_colour': Extra inputs are not permitted"),
        ({"segment_min_silence_s": 0.2}, "'segment_min_silence_s' needs 'segment': true"),
    ]:
        with pytest.raises(ValueError, match=re.escape(named)):
            segment_options(parameters, spec)


def test_each_segment_is_featurised_as_a_recording_of_it_alone(
    front_end: FrontEnd, sequence: tuple[np.ndarray, list[tuple[float, float]]]
) -> None:
    waveform, _ = sequence
    options = SegmentOptions()
    features, spans = segment_features(front_end, waveform=waveform, sample_rate=RATE, options=options)
    assert features.shape == (1 + len(spans), *front_end.spec.feature_shape)
    np.testing.assert_array_equal(features[0], front_end.from_waveform(waveform=waveform, sample_rate=RATE))
    first = find_segments(front_end.band_pass(waveform), sample_rate=RATE, max_s=1.0, options=options)[0]
    alone = waveform[first.context_start : first.context_end]
    np.testing.assert_array_equal(features[1], front_end.from_waveform(waveform=alone, sample_rate=RATE))


def _infer(url: str, files: list[bytes], parameters: dict | None, outputs: list[str] | None = None):  # type: ignore[no-untyped-def]
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    audio = httpclient.InferInput("audio", [len(files)], "BYTES")
    audio.set_data_from_numpy(np.array(files, dtype=object), binary_data=True)
    requested = [httpclient.InferRequestedOutput(name, binary_data=True) for name in outputs] if outputs else None
    return client.infer("digits", [audio], parameters=parameters, outputs=requested)


def test_the_service_reads_a_sequence_of_digits_over_rest(
    service: ServiceSettings, sequence: tuple[np.ndarray, list[tuple[float, float]]]
) -> None:
    waveform, spans = sequence
    recording = encode(waveform, sample_rate=RATE, format="WAV")
    short = encode(_tones((0.2, 0.7), seconds=0.9), sample_rate=RATE, format="WAV")
    answer = _infer(service.url, [recording, short], {"segment": True})
    plain = _infer(service.url, [recording, short], None)
    assert answer.as_numpy("sequence")[0].decode() == " ".join(DIGITS)
    table = json.loads(answer.as_numpy("segments")[0])
    assert [entry["label"] for entry in table] == DIGITS
    for entry, (start_s, end_s) in zip(table, spans, strict=True):  # each inside its recording, in order
        assert start_s - 0.05 <= entry["start_s"] < entry["end_s"] <= end_s + 0.05
        assert 0 < entry["probability"] <= 1
    assert all(a["end_s"] <= b["start_s"] for a, b in itertools.pairwise(table))
    # The elements' own responses are as without `segment` (decoded: their rows share a predictor
    # call with the segments' here, a batch of another size, whose float32 sums may differ in the
    # last places), and every element gets its segments.
    np.testing.assert_array_equal(answer.as_numpy("label"), plain.as_numpy("label"))
    assert answer.as_numpy("probabilities").shape == (2, len(BUNDLED_LABELS))
    assert len(json.loads(answer.as_numpy("segments")[1])) == 1
    assert plain.as_numpy("sequence") is None


GRPC_CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
client = grpcclient.InferenceServerClient(sys.argv[1])
audio = grpcclient.InferInput("audio", [1], "BYTES")
audio.set_data_from_numpy(np.array([open(sys.argv[2], "rb").read()], dtype=object))
outputs = [grpcclient.InferRequestedOutput(name) for name in ("sequence", "segments")]
result = client.infer("digits", [audio], outputs=outputs, parameters={"segment": True, "segment_min_silence_s": 0.12})
answer = {name: result.as_numpy(name) for name in ("sequence", "segments", "label")}
print(json.dumps({name: None if value is None else value[0].decode() for name, value in answer.items()}))
try:
    client.infer("digits", [audio], parameters={"segment": True, "segment_snr_db": -3.0})
except Exception as error:
    print(json.dumps({"status": error.status(), "message": error.message()}))
"""


def test_the_service_reads_a_sequence_of_digits_over_grpc(
    service: ServiceSettings, sequence: tuple[np.ndarray, list[tuple[float, float]]], tmp_path: Path
) -> None:
    """tritonclient.grpc in its own process (its protobuf symbols clash with KServe's)."""
    path = tmp_path / "digits.wav"
    path.write_bytes(encode(sequence[0], sample_rate=RATE, format="WAV"))
    completed = subprocess.run(
        [sys.executable, "-c", GRPC_CLIENT, f"127.0.0.1:{service.grpc_port}", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    answer, refusal = (json.loads(line) for line in completed.stdout.splitlines())
    assert answer["sequence"] == " ".join(DIGITS)
    assert [entry["label"] for entry in json.loads(answer["segments"])] == DIGITS
    assert answer["label"] is None  # only what was asked for
    assert refusal["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "'segment_snr_db'" in refusal["message"]


def test_bad_segment_requests_are_400_naming_the_parameter_and_the_service_goes_on(
    service: ServiceSettings, sequence: tuple[np.ndarray, list[tuple[float, float]]]
) -> None:
    recording = encode(sequence[0], sample_rate=RATE, format="WAV")
    for parameters, outputs, named in [
        ({"segment": "true"}, None, "'segment' must be true or false"),
        ({"segment": True, "segment_min_silence_s": 0}, None, "'segment_min_silence_s'"),
        ({"segment_threshold_db": 20}, None, "'segment_threshold_db' needs 'segment': true"),
        (None, ["label", "sequence"], "output 'sequence' needs the request parameter 'segment': true"),
        ({"segment": True, "segment_max_segments": 3}, None, "element 0: 5 segments, over the limit of 3"),
    ]:
        with pytest.raises(InferenceServerException, match=re.escape(named)) as refused:
            _infer(service.url, [recording], parameters, outputs)
        assert refused.value.status() == "400"
    answer = _infer(service.url, [recording], {"segment": True})
    assert answer.as_numpy("sequence")[0].decode() == " ".join(DIGITS)
    metadata = requests.get(f"{service.url}/v2/models/digits", timeout=5).json()
    assert {"name": "sequence", "datatype": "BYTES", "shape": [-1]} in metadata["outputs"]


def test_predict_command_prints_the_sequence_and_a_segment_table(
    service: ServiceSettings,
    sequence: tuple[np.ndarray, list[tuple[float, float]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "digits.wav"
    path.write_bytes(encode(sequence[0], sample_rate=RATE, format="WAV"))
    assert main(["predict", "--segment", "--url", service.url, str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}: {' '.join(DIGITS)}"
    assert lines[1].split() == ["start", "s", "end", "s", "probability", "label"]
    rows = [line.split() for line in lines[2:]]
    assert [row[-1] for row in rows] == DIGITS
    assert all(float(row[0]) < float(row[1]) for row in rows)
