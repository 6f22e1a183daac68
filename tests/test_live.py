"""Live audio over gRPC (``ModelStreamInfer``), driven by tritonclient.grpc's own streaming API
(``start_stream``, ``async_stream_infer``) against the real service, on real recordings: FSDD
digit strings with pauses and ESC-10 clips joined. tritonclient.grpc runs in a process of its
own (its protobuf names clash with KServe's in this one)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from audio_maas.serving.settings import ServiceSettings
from bench.soak import server_rss_mib
from tests.conftest import BUNDLED_MODEL, SHARED_DATA, loopback_settings, running_service

STREAM_CLIENT = """
import io, json, os, queue, sys, time
import numpy as np
import soundfile
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

url, model, path, rate, chunk_s, mode = sys.argv[1:7]
rate, chunk_s = int(rate), float(chunk_s)
audio = np.load(path)
answers = queue.Queue()
client = grpcclient.InferenceServerClient(url)
client.start_stream(callback=lambda result, error: answers.put((result, error)))
step = int(rate * chunk_s)
starts = list(range(0, len(audio), step))
for n, i in enumerate(starts):
    piece = audio[i : i + step]
    if mode == "encoded":  # each piece a whole WAV file
        wav = io.BytesIO()
        soundfile.write(wav, piece, rate, format="WAV")
        tensor = grpcclient.InferInput("audio", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([wav.getvalue()], dtype=object))
    elif mode == "garbage" and n == 2:
        tensor = grpcclient.InferInput("audio", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([b"RIFF" + bytes(range(200))], dtype=object))
    elif mode == "wrong-dtype" and n == 2:
        tensor = grpcclient.InferInput("waveform", [1, len(piece)], "INT32")
        tensor.set_data_from_numpy((piece * 32767).astype(np.int32)[None])
    else:
        tensor = grpcclient.InferInput("waveform", [1, len(piece)], "INT16")
        tensor.set_data_from_numpy((piece * 32767).astype(np.int16)[None])
    parameters = {"sample_rate": rate * 2 if mode == "rate-change" and n == 2 else rate}
    if mode == "partial":
        parameters["partial_ms"] = 200
    try:
        client.async_stream_infer(model, [tensor], sequence_id=7, sequence_start=n == 0,
                                  sequence_end=n == len(starts) - 1, parameters=parameters)
    except InferenceServerException:  # the server ended the stream: its callback says why
        break
    if mode == "vanish" and n == len(starts) // 2:
        os._exit(0)  # gone without closing the stream
    if mode == "idle" and n == 0:
        time.sleep(3)
out = {"answers": [], "error": None}
while True:
    try:
        result, error = answers.get(timeout=60)
    except queue.Empty:
        print(json.dumps({**out, "error": "no answer within 60 s"}), flush=True)
        os._exit(0)  # tritonclient's stream thread would keep the process alive
    if error is not None:
        out["error"] = str(error)
        break
    response = result.get_response()
    if "triton_final_response" in response.parameters:
        break
    out["answers"].append({"label": result.as_numpy("label")[0].decode(),
                           "start_s": float(result.as_numpy("start_s")[0]),
                           "end_s": float(result.as_numpy("end_s")[0]),
                           "partial": "partial" in response.parameters})
client.stop_stream()
print(json.dumps(out), flush=True)
os._exit(0)  # grpc's channel close at interpreter exit hung 1 run in 9 after the server ended a stream
"""


def _stream(
    url: str, model: str, audio: np.ndarray, rate: int, tmp_path: Path, *, mode: str = "plain", piece_s: float = 0.1
) -> Any:
    """The answers (or the error) of streaming ``audio`` in INT16 pieces of ``piece_s``, as fast as they go."""
    path = tmp_path / f"{model}-{mode}.npy"
    np.save(path, audio.astype(np.float32))
    done = subprocess.run(
        [sys.executable, "-c", STREAM_CLIENT, url, model, str(path), str(rate), str(piece_s), mode],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if mode == "vanish":
        return None
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _segment(url: str, model: str, audio: np.ndarray, rate: int) -> list[dict[str, Any]]:
    """The same audio sent whole with ``segment``: its segments."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    waveform = httpclient.InferInput("waveform", [1, len(audio)], "FP32")
    waveform.set_data_from_numpy(audio[np.newaxis].astype(np.float32))
    answer = client.infer(
        model, [waveform], parameters={"sample_rate": rate, "segment": True},
        outputs=[httpclient.InferRequestedOutput("segments")],
    )  # fmt: skip
    return json.loads(answer.as_numpy("segments")[0])


def _joined(paths: list[Path], *, rate: int, gaps_s: list[float], seed: int) -> np.ndarray:
    """The recordings at ``paths`` (all at ``rate``), with quiet noise before, between and after."""
    rng = np.random.default_rng(seed)
    parts = []
    for path, gap_s in zip(paths, gaps_s, strict=True):
        parts.append(0.002 * rng.standard_normal(int(rate * gap_s)))
        audio, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
        assert sample_rate == rate
        parts.append(audio.mean(axis=1))
    parts.append(0.002 * rng.standard_normal(int(rate * 0.5)))
    return np.concatenate(parts).astype(np.float32)


@pytest.fixture(scope="module")
def live_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live") / "serve.log"


@pytest.fixture(scope="module")
def live_service(live_log: Path) -> Iterator[ServiceSettings]:
    """digits and sounds, with small stream bounds: one stream at a time, 10 s held, 2 s idle;
    both servers' logs in ``live_log``."""
    settings = loopback_settings()
    models = ["--model", str(BUNDLED_MODEL), "--model", str(BUNDLED_MODEL.parent / "sounds")]
    with live_log.open("wb") as log, running_service(
        settings,
        "--max-streams", "1", "--sequence-max-held-s", "10", "--stream-idle-s", "2",
        models=models, output=log,
    ):  # fmt: skip
        yield settings


@pytest.mark.parametrize("speaker", ["george", "jackson"])
def test_a_digit_string_streamed_reads_as_segment_reads_it_whole(
    live_service: ServiceSettings, fsdd_dir: Path, tmp_path: Path, speaker: str
) -> None:
    digits = [3, 1, 4, 1, 5, 9, 2, 6]
    paths = [fsdd_dir / "recordings" / f"{digit}_{speaker}_{i}.wav" for i, digit in enumerate(digits)]
    audio = _joined(paths, rate=8000, gaps_s=[0.5, 0.3, 0.6, 0.4, 0.3, 0.7, 0.5, 0.4], seed=len(speaker))
    whole = _segment(live_service.url, "digits", audio, 8000)
    streamed = _stream(f"127.0.0.1:{live_service.grpc_port}", "digits", audio, 8000, tmp_path)
    assert streamed["error"] is None
    assert [a["label"] for a in streamed["answers"]] == [s["label"] for s in whole] == [str(d) for d in digits]
    for answer, segment in zip(streamed["answers"], whole, strict=True):
        assert abs(answer["start_s"] - segment["start_s"]) < 0.1 and abs(answer["end_s"] - segment["end_s"]) < 0.1


def test_environmental_sounds_streamed_at_44_1_khz_read_as_segment_reads_them(
    live_service: ServiceSettings, tmp_path: Path
) -> None:
    """Three ESC-10 clips of fold 4 (which `sounds` was not trained on) joined by 1.5 s of quiet,
    resampled on the way by soxr's streaming resampler. The recording starts with the first clip:
    quiet noise before anything louder is, to a live stream of a model of events, a sound that
    hindsight over the whole recording would not count (audio_maas.features.stream)."""
    esc10 = SHARED_DATA / "esc10"
    paths = [
        sorted((esc10 / folder).glob("4-*.ogg"))[0] for folder in ("001 - Dog bark", "009 - Rooster", "004 - Baby cry")
    ]
    audio = _joined(paths, rate=44100, gaps_s=[0.0, 1.5, 1.5], seed=1)
    whole = _segment(live_service.url, "sounds", audio, 44100)
    streamed = _stream(f"127.0.0.1:{live_service.grpc_port}", "sounds", audio, 44100, tmp_path)
    assert streamed["error"] is None
    assert [a["label"] for a in streamed["answers"]] == [s["label"] for s in whole]
    assert len(whole) >= 3


@pytest.mark.parametrize(
    ("mode", "refusal"),
    [
        ("rate-change", "StatusCode.INVALID_ARGUMENT.*sequence 7: a piece at 16000 Hz after pieces at 8000 Hz"),
        ("idle", "StatusCode.DEADLINE_EXCEEDED.*nothing received for 2 s \\(stream_idle_s\\)"),
        ("wrong-dtype", "StatusCode.INVALID_ARGUMENT.*input 'waveform' must be FP32 \\(or INT16 PCM\\), got INT32"),
        ("garbage", "StatusCode.INVALID_ARGUMENT.*element 0: could not decode audio \\(204 bytes\\)"),
    ],
)
def test_a_bad_piece_or_a_silent_stream_is_answered_in_our_words_and_the_next_one_is_served(
    live_service: ServiceSettings, fsdd_dir: Path, tmp_path: Path, mode: str, refusal: str
) -> None:
    url = f"127.0.0.1:{live_service.grpc_port}"
    audio = _joined([fsdd_dir / "recordings" / "7_theo_0.wav"], rate=8000, gaps_s=[0.3], seed=0)
    ended = _stream(url, "digits", audio, 8000, tmp_path, mode=mode)
    assert ended["error"] is not None
    assert re.search(refusal, ended["error"]), ended["error"]
    assert [a["label"] for a in _stream(url, "digits", audio, 8000, tmp_path)["answers"]] == ["7"]


def test_a_client_that_vanishes_mid_stream_frees_its_place(
    live_service: ServiceSettings, fsdd_dir: Path, tmp_path: Path
) -> None:
    """The service holds one stream at a time here: after ten clients gone mid-stream without a
    word, an eleventh is served, so each one's place was given back, and the transformer's
    memory is where it was after the first full stream (within 2 MiB)."""
    url = f"127.0.0.1:{live_service.grpc_port}"
    paths = [fsdd_dir / "recordings" / f"{digit}_theo_1.wav" for digit in (2, 8, 0)]
    audio = _joined(paths, rate=8000, gaps_s=[0.3, 0.5, 0.5], seed=0)
    _stream(url, "digits", audio, 8000, tmp_path)
    before = server_rss_mib("transformer", live_service.http_port)
    for _ in range(10):
        _stream(url, "digits", audio, 8000, tmp_path, mode="vanish")
    time.sleep(1)  # the server hears of the last one going
    assert server_rss_mib("transformer", live_service.http_port) - before < 2
    whole = [segment["label"] for segment in _segment(live_service.url, "digits", audio, 8000)]
    assert [a["label"] for a in _stream(url, "digits", audio, 8000, tmp_path)["answers"]] == whole


def test_streams_over_the_servers_bounds_end_naming_the_bound(
    live_service: ServiceSettings, fsdd_dir: Path, tmp_path: Path
) -> None:
    """One stream at a time here: a second while the first waits is refused, and /metrics counts
    the one open and the refusal; a piece that would have the server hold more than 10 s of its
    recording is refused."""
    url = f"127.0.0.1:{live_service.grpc_port}"
    audio = _joined([fsdd_dir / "recordings" / "7_theo_0.wav"], rate=8000, gaps_s=[0.3], seed=0)
    np.save(tmp_path / "first.npy", audio)
    first = subprocess.Popen(
        [sys.executable, "-c", STREAM_CLIENT, url, "digits", str(tmp_path / "first.npy"), "8000", "0.1", "idle"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # the first has sent its first piece and waits
        refused_before = _metric(live_service, "audio_maas_stream_refusals_total", setting="max_streams")
        second = _stream(url, "digits", audio, 8000, tmp_path)
        assert re.search(
            r"RESOURCE_EXHAUSTED.*the server holds 1 streams, its limit \(max_streams 1\)", second["error"]
        )
        assert _metric(live_service, "audio_maas_streams_open") == 1
        assert _metric(live_service, "audio_maas_stream_sequences_open") == 1
        assert _metric(live_service, "audio_maas_stream_refusals_total", setting="max_streams") == refused_before + 1
    finally:
        first.communicate(timeout=60)
    long = np.random.default_rng(0).uniform(-0.1, 0.1, 8000 * 12).astype(np.float32)
    refused = _stream(url, "digits", long, 8000, tmp_path, piece_s=11)
    assert re.search(
        r"RESOURCE_EXHAUSTED\] sequence 7: the server would hold 11\.0 s of its audio, over the limit of 10 s "
        r"\(sequence_max_held_s\)",
        refused["error"],
    )


def test_listen_prints_each_sound_of_a_file_as_it_plays_and_of_pcm_on_stdin(
    live_service: ServiceSettings, fsdd_dir: Path, tmp_path: Path
) -> None:
    """``audio-maas listen FILE`` (paced as the file plays: 2.6 s) and ``listen -`` (raw 16 kHz
    PCM on stdin): one line per digit, in order, each with the time the answer took."""
    paths = [fsdd_dir / "recordings" / f"{digit}_jackson_3.wav" for digit in (8, 6, 7)]
    audio = _joined(paths, rate=8000, gaps_s=[0.2, 0.4, 0.4], seed=0)
    recording = tmp_path / "867.wav"
    soundfile.write(recording, audio, 8000)
    url = f"127.0.0.1:{live_service.grpc_port}"
    command = [sys.executable, "-m", "audio_maas.cli", "listen", "--url", url]
    started = time.monotonic()
    played = subprocess.run([*command, str(recording)], capture_output=True, text=True, timeout=60)
    assert played.returncode == 0, played.stderr
    assert time.monotonic() - started > len(audio) / 8000  # it played in real time
    pcm = (np.repeat(audio, 2) * 32767).astype("<i2").tobytes()  # 16 kHz
    piped = subprocess.run([*command, "--rate", "16000", "-"], input=pcm, capture_output=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    for printed in (played.stdout, piped.stdout.decode()):
        lines = printed.splitlines()
        assert [line.split()[4] for line in lines] == ["8", "6", "7"]
        assert all(re.search(r"answered \d+ ms after the sound ended$", line) for line in lines)


def test_partial_answers_come_while_a_sound_goes_on_and_its_own_answer_after(
    live_service: ServiceSettings, fsdd_dir: Path, tmp_path: Path
) -> None:
    """With ``partial_ms`` 200: each word is also answered as heard so far, at most every 200 ms
    of the recording, from its start; the answers of the whole words are those without it."""
    paths = [fsdd_dir / "recordings" / f"{digit}_lucas_2.wav" for digit in (5, 0, 4)]
    audio = _joined(paths, rate=8000, gaps_s=[0.4, 0.6, 0.6], seed=3)
    url = f"127.0.0.1:{live_service.grpc_port}"
    plain = _stream(url, "digits", audio, 8000, tmp_path)["answers"]
    answers = _stream(url, "digits", audio, 8000, tmp_path, mode="partial")["answers"]
    final = [a for a in answers if not a["partial"]]
    assert [(a["label"], a["start_s"]) for a in final] == [(a["label"], a["start_s"]) for a in plain]
    partial = [a for a in answers if a["partial"]]
    assert partial and {a["start_s"] for a in partial} <= {a["start_s"] for a in final}
    for answer in partial:  # before its sound's own answer, and heard up to no later than its end
        own = next(a for a in final if a["start_s"] == answer["start_s"])
        assert answers.index(answer) < answers.index(own) and answer["end_s"] <= own["end_s"] + 0.2


def test_a_websocket_on_the_rest_port_streams_as_grpc_does(
    live_service: ServiceSettings, fsdd_dir: Path, tmp_path: Path
) -> None:
    """``/v2/models/digits/stream``: text messages of V2 JSON, each followed by its INT16 piece as a
    binary message; the answers are gRPC's, as V2 JSON; a piece without its rate is answered 400
    in our words and the socket stays open, until it has been silent for stream_idle_s (4408)."""
    import asyncio

    import websockets

    paths = [fsdd_dir / "recordings" / f"{digit}_nicolas_4.wav" for digit in (1, 9, 8)]
    audio = _joined(paths, rate=8000, gaps_s=[0.3, 0.5, 0.4], seed=5)
    url = f"ws://127.0.0.1:{live_service.http_port}/v2/models/digits/stream"

    async def stream() -> list[dict[str, Any]]:
        async with websockets.connect(url) as socket:
            starts = list(range(0, len(audio), 800))
            for n, first in enumerate(starts):
                piece = (audio[first : first + 800] * 32767).astype("<i2")
                parameters = {"sample_rate": 8000, "sequence_id": 3, "sequence_end": n == len(starts) - 1}
                tensor = {"name": "waveform", "shape": [1, len(piece)], "datatype": "INT16",
                          "parameters": {"binary_data_size": piece.nbytes}}  # fmt: skip
                await socket.send(json.dumps({"parameters": parameters, "inputs": [tensor]}))
                await socket.send(piece.tobytes())
            answers = []
            while not (answer := json.loads(await socket.recv()))["parameters"].get("triton_final_response"):
                answers.append({output["name"]: output["data"][0] for output in answer["outputs"]})
            return answers

    async def bad_piece_then_silence() -> tuple[dict[str, Any], dict[str, Any], int]:
        async with websockets.connect(url) as socket:
            await socket.send(
                json.dumps({"inputs": [{"name": "waveform", "shape": [1, 2], "datatype": "FP32", "data": [0, 1]}]})
            )
            refused = json.loads(await socket.recv())
            ended = json.loads(await socket.recv())  # after stream_idle_s, 2 s here
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await socket.recv()
            assert closed.value.rcvd is not None
            return refused, ended, closed.value.rcvd.code

    over_websocket = asyncio.run(stream())
    over_grpc = _stream(f"127.0.0.1:{live_service.grpc_port}", "digits", audio, 8000, tmp_path)["answers"]
    assert [(a["label"], round(a["start_s"], 3)) for a in over_websocket] == [
        (a["label"], round(a["start_s"], 3)) for a in over_grpc
    ]
    refused, ended, code = asyncio.run(bad_piece_then_silence())
    assert refused["status"] == 400 and refused["outputs"] == []
    assert refused["error"].startswith(
        "the stream's recording: input 'waveform' needs the request parameter 'sample_rate'"
    )
    assert ended == {"error": "nothing received for 2 s (stream_idle_s)"} and code == 4408


def test_pieces_may_be_encoded_files(live_service: ServiceSettings, fsdd_dir: Path, tmp_path: Path) -> None:
    """Each piece a whole WAV file (``audio`` BYTES) instead of PCM: the same answers."""
    paths = [fsdd_dir / "recordings" / f"{digit}_george_2.wav" for digit in (4, 0, 6)]
    audio = _joined(paths, rate=8000, gaps_s=[0.4, 0.4, 0.6], seed=7)
    url = f"127.0.0.1:{live_service.grpc_port}"
    encoded = _stream(url, "digits", audio, 8000, tmp_path, mode="encoded")
    assert encoded["error"] is None
    assert encoded["answers"] == _stream(url, "digits", audio, 8000, tmp_path)["answers"]


SEQUENCES_CLIENT = """
import json, os, queue, sys
import numpy as np
import tritonclient.grpc as grpcclient

url, model, path, garbage_in = sys.argv[1:5]
recordings = dict(np.load(path))
answers = queue.Queue()
client = grpcclient.InferenceServerClient(url)
client.start_stream(callback=lambda result, error: answers.put((result, error)))
pieces = {int(key): [audio[i : i + 800] for i in range(0, len(audio), 800)] for key, audio in recordings.items()}
for n in range(max(len(p) for p in pieces.values())):  # one piece of each sequence in turn
    for key, sequence in pieces.items():
        if n >= len(sequence):
            continue
        tensor = grpcclient.InferInput("waveform", [1, len(sequence[n])], "INT16")
        tensor.set_data_from_numpy((sequence[n] * 32767).astype(np.int16)[None])
        if key == int(garbage_in) and n == 2:
            tensor = grpcclient.InferInput("audio", [1], "BYTES")
            tensor.set_data_from_numpy(np.array([b"RIFF" + bytes(range(200))], dtype=object))
        client.async_stream_infer(model, [tensor], sequence_id=key, sequence_start=n == 0,
                                  sequence_end=n == len(sequence) - 1, parameters={"sample_rate": 8000})
out = {"answers": {}, "errors": []}
ended = 0
while ended < len(pieces) - 1:
    try:
        result, error = answers.get(timeout=60)
    except queue.Empty:
        out["errors"].append("no answer within 60 s")
        break
    if error is not None:
        out["errors"].append(str(error))
        continue
    response = result.get_response()
    key = response.parameters["sequence_id"].int64_param
    if "triton_final_response" in response.parameters:
        ended += 1
        continue
    out["answers"].setdefault(str(key), []).append(
        [result.as_numpy("label")[0].decode(), round(float(result.as_numpy("start_s")[0]), 3)]
    )
client.stop_stream()
print(json.dumps(out), flush=True)
os._exit(0)
"""


def _metric(service: ServiceSettings, name: str, **labels: str) -> float:
    """A sample of the transformer's /metrics for model ``digits``; 0 when it has none yet."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"{service.url}/metrics", timeout=5).read().decode()
    wanted = {"model": "digits", **labels}
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]
    return sum(sample.value for sample in samples if sample.labels == wanted)


def test_eight_recordings_on_one_stream_are_heard_as_eight_streams_and_a_bad_piece_stops_one(
    live_service: ServiceSettings, fsdd_dir: Path, tmp_path: Path
) -> None:
    """Eight digit strings of four speakers sent as eight sequences interleaved on one stream, as
    a gateway carrying eight callers would, one of them with a garbage piece: that sequence is
    answered its error, naming it, and the seven others are heard exactly as each alone on a
    stream of its own. /metrics has the refusal and each sound's time to its answer."""
    rng = np.random.default_rng(8)
    recordings = {}
    for key, speaker in enumerate(["george", "jackson", "lucas", "nicolas"] * 2, start=1):
        digits = rng.choice(10, size=3, replace=False)
        paths = [fsdd_dir / "recordings" / f"{digit}_{speaker}_{10 + key}.wav" for digit in digits]
        recordings[str(key)] = _joined(paths, rate=8000, gaps_s=[0.3, 0.4, 0.5], seed=key)
    url = f"127.0.0.1:{live_service.grpc_port}"
    alone = {
        key: [[a["label"], round(a["start_s"], 3)] for a in _stream(url, "digits", audio, 8000, tmp_path)["answers"]]
        for key, audio in recordings.items()
    }
    refusals = _metric(live_service, "audio_maas_stream_refusals_total", setting="bad_piece")
    delays = _metric(live_service, "audio_maas_stream_response_delay_seconds_count")
    np.savez(tmp_path / "recordings.npz", **recordings)
    done = subprocess.run(
        [sys.executable, "-c", SEQUENCES_CLIENT, url, "digits", str(tmp_path / "recordings.npz"), "3"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    together = json.loads(done.stdout)
    first, *later = together["errors"]
    assert first.startswith("[StatusCode.INVALID_ARGUMENT] sequence 3: element 0: could not decode audio (204 bytes)")
    refused_later = "[StatusCode.INVALID_ARGUMENT] sequence 3: it was refused before: start it anew (sequence_start)"
    assert later == [refused_later] * (-(-len(recordings["3"]) // 800) - 3)  # each piece after the bad one
    heard = {key: answers for key, answers in together["answers"].items() if key != "3"}
    assert heard == {key: answers for key, answers in alone.items() if key != "3"}
    assert len(heard) == 7 and all(heard.values())
    assert _metric(live_service, "audio_maas_stream_refusals_total", setting="bad_piece") - refusals == len(
        together["errors"]
    )
    heard_alone_and_together = sum(len(answers) for answers in heard.values())
    assert _metric(live_service, "audio_maas_stream_response_delay_seconds_count") - delays >= heard_alone_and_together
    assert (
        _metric(live_service, "audio_maas_streams_open")
        == _metric(live_service, "audio_maas_stream_sequences_open")
        == 0
    )


def test_the_predictor_serves_no_stream(live_service: ServiceSettings, fsdd_dir: Path, tmp_path: Path) -> None:
    """Only the transformer streams: the predictor has no ModelStreamInfer and no WebSocket route."""
    import asyncio

    import websockets

    audio = _joined([fsdd_dir / "recordings" / "7_theo_0.wav"], rate=8000, gaps_s=[0.3], seed=0)
    refused = _stream(f"127.0.0.1:{live_service.predictor_grpc_port}", "digits", audio, 8000, tmp_path)
    assert refused["error"] is not None and "StatusCode.UNIMPLEMENTED" in refused["error"]

    async def connect() -> None:
        url = f"ws://127.0.0.1:{live_service.predictor_http_port}/v2/models/digits/stream"
        async with websockets.connect(url):
            pass

    with pytest.raises(websockets.InvalidStatus):
        asyncio.run(connect())


def test_the_streams_above_left_no_traceback_in_the_logs(live_service: ServiceSettings, live_log: Path) -> None:
    """Every stream of this module ended, well or badly, in our words: none in a traceback (a
    WebSocket closed by its client first once left one)."""
    logged = live_log.read_text(errors="replace")
    assert "WebSocket /v2/models/digits/stream" in logged  # the log is the one the streams wrote to
    assert "Traceback" not in logged
