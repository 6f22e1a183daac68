"""Whisper rebuilt in TensorFlow ops from CTranslate2's weights: its log-mel front end, its encoder
and greedy decoding, in one function a SavedModel serves.

Follows openai-whisper's ``audio.py``, ``model.py`` and ``decoding.py`` (Radford et al., *Robust
Speech Recognition via Large-Scale Weak Supervision*, 2022) with CTranslate2's variable layout:
Linear ``[out, in]``, Conv1D ``[out, in, width]``, self-attention's ``linear_0`` q|k|v fused (k
without bias), cross-attention's ``linear_0`` q and ``linear_1`` k|v fused. English-only models:
the prompt is ``<|startoftranscript|><|notimestamps|>``.

Every weight is cast to a float32 tensor once, before the decoding loop: a variable read inside
``tf.while_loop`` is read (and a float32 cast of it made) at every step.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

__all__ = ["EOT", "MAX_NEW_TOKENS", "SAMPLE_RATE", "WINDOW_SAMPLES", "Whisper", "WhisperEncoder"]

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE
N_FFT = 400
HOP = 160
MAX_NEW_TOKENS = 224
"""openai-whisper's ``sample_len``: half the decoder's 448 positions."""
EOT = 50256
SOT = 50257
"""The first special token: every id from here on is a control or timestamp token, never text."""
NO_SPEECH = 50361
NO_TIMESTAMPS = 50362
PROMPT = (SOT, NO_TIMESTAMPS)
LAYER_NORM_EPSILON = 1e-5


class WhisperEncoder(tf.Module):
    """Whisper's log-mel front end and encoder, on audio of any length up to 30 s: ``encode``
    takes float32 ``[N, samples]`` at 16 kHz and gives ``[N, ceil(samples / 320), d]``, one row
    every 20 ms. Shorter audio uses the first positional encodings alone, as whisper.cpp's
    ``audio_ctx`` does, instead of 30 s of padding."""

    def __init__(
        self, variables: Mapping[str, np.ndarray], *, mel_filters: np.ndarray, parts: tuple[str, ...] = ("encoder/",)
    ) -> None:
        super().__init__()
        self.weights = {
            name.replace("/", "."): tf.Variable(value, trainable=False, name=name)
            for name, value in variables.items()
            if value.ndim and name.startswith(parts) and name != "decoder/projection/weight"
        }
        self.mel_filters = tf.constant(mel_filters.T.astype(np.float32))  # [bins, mels]
        self.heads = int(variables["encoder/num_heads"])
        self.encoder_layers = _layers(variables, "encoder")
        self.width = int(variables["encoder/layer_norm/gamma"].shape[0])

    def _weight(self, name: str) -> tf.Tensor:
        return tf.cast(self.weights[name.replace("/", ".")], tf.float32)

    def _linear(self, prefix: str) -> tuple[tf.Tensor, tf.Tensor]:
        """The ``[in, out]`` kernel and the bias of CTranslate2's linear ``prefix``."""
        return tf.transpose(self._weight(f"{prefix}/weight")), self._weight(f"{prefix}/bias")

    def _norm(self, prefix: str) -> tuple[tf.Tensor, tf.Tensor]:
        return self._weight(f"{prefix}/gamma"), self._weight(f"{prefix}/beta")

    def _attention(self, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
        """Multi-head attention of ``q`` ``[N, Tq, d]`` over ``k``, ``v`` ``[N, Tk, d]``."""

        def heads(x: tf.Tensor) -> tf.Tensor:
            shape = tf.shape(x)
            return tf.transpose(tf.reshape(x, [shape[0], shape[1], self.heads, -1]), [0, 2, 1, 3])

        qh, kh, vh = heads(q), heads(k), heads(v)
        scores = tf.matmul(qh, kh, transpose_b=True) / tf.sqrt(tf.cast(tf.shape(qh)[-1], tf.float32))
        if mask is not None:
            scores = tf.where(mask, scores, -np.inf)
        out = tf.transpose(tf.matmul(tf.nn.softmax(scores), vh), [0, 2, 1, 3])
        shape = tf.shape(out)
        return tf.reshape(out, [shape[0], shape[1], -1])

    def _feed_forward_weights(self, prefix: str) -> tuple[tuple[tf.Tensor, tf.Tensor], ...]:
        """The layer norm, inner and outer linear of CTranslate2's feed-forward block ``prefix``."""
        return (
            self._norm(f"{prefix}/layer_norm"),
            self._linear(f"{prefix}/linear_0"),
            self._linear(f"{prefix}/linear_1"),
        )

    def mel_spectrogram(self, waveform: tf.Tensor) -> tf.Tensor:
        """openai-whisper's ``log_mel_spectrogram`` of ``[N, samples]``: a centred STFT
        (reflected), its last frame dropped, power on the mel filters, log10 floored at the
        clip's peak less 8, scaled. ``[N, samples // 160, 80]``."""
        padded = tf.pad(waveform, [[0, 0], [N_FFT // 2, N_FFT // 2]], mode="REFLECT")
        window = lambda length, dtype: tf.signal.hann_window(length, periodic=True, dtype=dtype)  # noqa: E731
        stft = tf.signal.stft(padded, N_FFT, HOP, fft_length=N_FFT, window_fn=window)[:, :-1]
        mel = tf.matmul(tf.square(tf.abs(stft)), self.mel_filters)
        log_spec = tf.math.log(tf.maximum(mel, 1e-10)) / tf.math.log(10.0)
        log_spec = tf.maximum(log_spec, tf.reduce_max(log_spec, axis=[1, 2], keepdims=True) - 8.0)
        return (log_spec + 4.0) / 4.0

    def encode(self, waveform: tf.Tensor) -> tf.Tensor:
        """``[N, samples]`` at 16 kHz, at most 30 s -> ``[N, ceil(samples / 320), d]``."""
        return self._encode(self.mel_spectrogram(waveform))

    def _encode(self, mel: tf.Tensor) -> tf.Tensor:
        """``[N, frames, 80]`` log-mel, at most 3000 frames -> ``[N, ceil(frames / 2), d]``."""
        x = mel
        for name, stride in (("conv1", 1), ("conv2", 2)):
            kernel = tf.transpose(self._weight(f"encoder/{name}/weight"), [2, 1, 0])  # [width, in, out]
            x = tf.nn.conv1d(tf.pad(x, [[0, 0], [1, 1], [0, 0]]), kernel, stride, "VALID")
            x = tf.nn.gelu(x + self._weight(f"encoder/{name}/bias"), approximate=False)
        x = x + self._weight("encoder/position_encodings/encodings")[: tf.shape(x)[1]]
        for layer in range(self.encoder_layers):
            prefix = f"encoder/layer_{layer}"
            h = _layer_norm(x, *self._norm(f"{prefix}/self_attention/layer_norm"))
            q, k, v = tf.split(_dense(h, *self._linear(f"{prefix}/self_attention/linear_0")), 3, axis=-1)
            x = x + _dense(self._attention(q, k, v), *self._linear(f"{prefix}/self_attention/linear_1"))
            x = x + _feed_forward(x, *self._feed_forward_weights(f"{prefix}/ffn"))
        return _layer_norm(x, *self._norm("encoder/layer_norm"))


class Whisper(WhisperEncoder):
    """``transcribe``: float32 ``[N, 480000]`` (30 s at 16 kHz, zero-padded) -> ``tokens`` ``[N,
    224]`` (float32 ids, exact below 2**24; ``EOT`` after the last), ``no_speech`` ``[N]`` (the
    probability of ``<|nocaptions|>`` after ``<|startoftranscript|>``) and ``avg_logprob`` ``[N]``
    (mean log-probability of the tokens chosen, the end included). ``log_mel``: the encoder's input
    ``[N, 3000, 80]``."""

    def __init__(
        self,
        variables: Mapping[str, np.ndarray],
        *,
        mel_filters: np.ndarray,
        suppress: list[int],
        suppress_at_start: list[int],
    ) -> None:
        super().__init__(variables, mel_filters=mel_filters, parts=("encoder/", "decoder/"))
        self.decoder_layers = _layers(variables, "decoder")
        vocabulary = variables["decoder/embeddings/weight"].shape[0]
        suppressed = np.zeros(vocabulary, np.float32)
        suppressed[[*suppress, *range(SOT, vocabulary)]] = -np.inf
        self.suppressed = tf.constant(suppressed)
        start = np.zeros(vocabulary, np.float32)
        start[suppress_at_start] = -np.inf
        self.suppressed_at_start = tf.constant(start)

    @tf.function(input_signature=[tf.TensorSpec([None, WINDOW_SAMPLES], tf.float32)])
    def log_mel(self, waveform: tf.Tensor) -> tf.Tensor:
        return self.mel_spectrogram(waveform)

    @tf.function(input_signature=[tf.TensorSpec([None, WINDOW_SAMPLES], tf.float32)])
    def transcribe(self, waveform: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._decode(self.encode(waveform))

    def _decode(self, audio: tf.Tensor) -> dict[str, tf.Tensor]:
        """Greedy decoding after ``PROMPT`` with a key/value cache, ``MAX_NEW_TOKENS`` at most."""
        rows = tf.shape(audio)[0]
        positions = len(PROMPT) + MAX_NEW_TOKENS
        embeddings = self._weight("decoder/embeddings/weight")
        position_encodings = self._weight("decoder/position_encodings/encodings")
        layers = []
        for layer in range(self.decoder_layers):  # every weight a tensor here, outside the loop
            prefix = f"decoder/layer_{layer}"
            cross_kernel, cross_bias = self._linear(f"{prefix}/attention/linear_1")
            cross_k, cross_v = tf.split(_dense(audio, cross_kernel, cross_bias), 2, axis=-1)
            layers.append({
                "self_norm": self._norm(f"{prefix}/self_attention/layer_norm"),
                "self_qkv": self._linear(f"{prefix}/self_attention/linear_0"),
                "self_out": self._linear(f"{prefix}/self_attention/linear_1"),
                "cross_norm": self._norm(f"{prefix}/attention/layer_norm"),
                "cross_q": self._linear(f"{prefix}/attention/linear_0"),
                "cross_out": self._linear(f"{prefix}/attention/linear_2"),
                "cross_k": cross_k, "cross_v": cross_v,
                "ffn": self._feed_forward_weights(f"{prefix}/ffn"),
            })  # fmt: skip
        final_norm = self._norm("decoder/layer_norm")
        prompt = tf.constant((*PROMPT, EOT), tf.int32)
        width = int(embeddings.shape[1])

        def step(t: tf.Tensor, token: tf.Tensor, keys: tuple, values: tuple) -> tuple:
            x = (tf.gather(embeddings, token) + position_encodings[t])[:, None, :]  # [N, 1, d]
            seen = (tf.range(positions) <= t)[None, None, None, :]
            new_keys, new_values = [], []
            for layer, cached_k, cached_v in zip(layers, keys, values, strict=True):
                h = _layer_norm(x, *layer["self_norm"])
                q, k, v = tf.split(_dense(h, *layer["self_qkv"]), 3, axis=-1)
                cached_k = tf.tensor_scatter_nd_update(cached_k, [[t]], tf.transpose(k, [1, 0, 2]))
                cached_v = tf.tensor_scatter_nd_update(cached_v, [[t]], tf.transpose(v, [1, 0, 2]))
                new_keys.append(cached_k)
                new_values.append(cached_v)
                attended = self._attention(
                    q, tf.transpose(cached_k, [1, 0, 2]), tf.transpose(cached_v, [1, 0, 2]), seen
                )
                x = x + _dense(attended, *layer["self_out"])
                h = _layer_norm(x, *layer["cross_norm"])
                x = x + _dense(self._attention(_dense(h, *layer["cross_q"]), layer["cross_k"], layer["cross_v"]),
                               *layer["cross_out"])  # fmt: skip
                x = x + _feed_forward(x, *layer["ffn"])
            x = _layer_norm(x[:, 0], *final_norm)
            return tf.matmul(x, embeddings, transpose_b=True), tuple(new_keys), tuple(new_values)

        def body(t, token, keys, values, tokens, finished, no_speech, logprob_sum, count):  # type: ignore[no-untyped-def]
            logits, keys, values = step(t, token, keys, values)
            no_speech = tf.cond(t == 0, lambda: tf.nn.softmax(logits)[:, NO_SPEECH], lambda: no_speech)
            generating = t >= len(PROMPT) - 1
            processed = logits + self.suppressed
            processed = tf.cond(t == len(PROMPT) - 1, lambda: processed + self.suppressed_at_start, lambda: processed)
            chosen = tf.argmax(processed, axis=-1, output_type=tf.int32)
            logprob = tf.gather(tf.nn.log_softmax(processed), chosen, axis=1, batch_dims=1)
            live = tf.logical_and(generating, tf.logical_not(finished))
            chosen = tf.where(live, chosen, EOT)
            column = tf.maximum(t - (len(PROMPT) - 1), 0)
            indices = tf.stack([tf.range(rows), tf.fill([rows], column)], axis=1)
            tokens = tf.where(generating, tf.tensor_scatter_nd_update(tokens, indices, chosen), tokens)
            logprob_sum += tf.where(live, logprob, 0.0)
            count += tf.cast(live, tf.float32)
            finished = tf.logical_or(finished, tf.logical_and(live, tf.equal(chosen, EOT)))
            token = tf.where(generating, chosen, tf.fill([rows], prompt[tf.minimum(t + 1, len(PROMPT))]))
            return t + 1, token, keys, values, tokens, finished, no_speech, logprob_sum, count

        def more(t, token, keys, values, tokens, finished, *_):  # type: ignore[no-untyped-def]
            return tf.logical_and(t < positions - 1, tf.logical_not(tf.reduce_all(finished)))

        empty = tuple(tf.zeros([positions, rows, width]) for _ in layers)
        state = (
            tf.constant(0), tf.fill([rows], PROMPT[0]), empty, empty, tf.fill([rows, MAX_NEW_TOKENS], EOT),
            tf.zeros([rows], tf.bool), tf.zeros([rows]), tf.zeros([rows]), tf.zeros([rows]),
        )  # fmt: skip
        *_, tokens, _, no_speech, logprob_sum, count = tf.while_loop(more, body, state, parallel_iterations=1)
        return {
            "tokens": tf.cast(tokens, tf.float32),
            "no_speech": no_speech,
            "avg_logprob": logprob_sum / tf.maximum(count, 1.0),
        }


def _dense(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    return tf.tensordot(x, kernel, axes=1) + bias


def _feed_forward(
    x: tf.Tensor,
    norm: tuple[tf.Tensor, tf.Tensor],
    inner: tuple[tf.Tensor, tf.Tensor],
    outer: tuple[tf.Tensor, tf.Tensor],
) -> tf.Tensor:
    return _dense(tf.nn.gelu(_dense(_layer_norm(x, *norm), *inner), approximate=False), *outer)


def _layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + LAYER_NORM_EPSILON) * gamma + beta


def _layers(variables: Mapping[str, np.ndarray], part: str) -> int:
    return sum(1 for name in variables if name.startswith(f"{part}/layer_") and name.endswith("ffn/linear_1/bias"))
