"""Live streams' metrics, for ``/metrics`` (gRPC ``ModelStreamInfer`` and the WebSocket alike):

- ``audio_maas_streams_open{model}`` and ``audio_maas_stream_sequences_open{model}``: gauges;
- ``audio_maas_stream_refusals_total{model, setting}``: what a bound refused, by the setting that
  bounds it (``max_streams``, ``stream_max_sequences``, ``sequence_max_held_s``,
  ``stream_idle_s``), and pieces refused as not audio (``bad_piece``);
- ``audio_maas_stream_response_delay_seconds{model}``: from the arrival of the piece that carried a
  sound's end to its response, the wait for the quiet that ends it included.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["STREAMS_OPEN", "STREAM_REFUSALS", "STREAM_RESPONSE_DELAY_SECONDS", "STREAM_SEQUENCES"]

STREAMS_OPEN = Gauge("audio_maas_streams_open", "Live streams open", ["model"])
STREAM_SEQUENCES = Gauge("audio_maas_stream_sequences_open", "Sequences open on live streams", ["model"])
STREAM_REFUSALS = Counter(
    "audio_maas_stream_refusals",
    "Live stream pieces and streams refused, by the setting or fault",
    ["model", "setting"],
)
STREAM_RESPONSE_DELAY_SECONDS = Histogram(
    "audio_maas_stream_response_delay_seconds",
    "Seconds from the arrival of a sound's end on a live stream to its response",
    ["model"],
    buckets=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0),
)
