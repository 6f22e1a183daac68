"""``audio-maas plan``: replicas, latency and cost under a traffic trace, by simulating Knative's autoscaler.

One replica is what ``make bench`` measured: a transformer and its predictor on 2 cores,
answering ``clips_per_s`` at a given number of requests in flight with a given latency. The
simulation advances in 1 s ticks:

- traffic: requests per second from the trace; each ready replica takes an equal share;
- service: the share sets the replica's concurrency and latency by interpolating the measured
  curve; load beyond the measured peak queues, and the queue's wait adds to latency;
- autoscaler (Knative's KPA): the requests in flight (or arriving per second, for ``rps``),
  averaged over a stable window (60 s) and a panic window (6 s), divided by ``target x
  utilisation`` per pod gives the desired pods.
  Panic mode starts when the panic window wants at least twice the ready pods, and in it the
  autoscaler never scales down; it ends once a stable window passes without another trigger.
  Scale-down is at most halving per tick, within ``min_replicas..max_replicas``; with
  ``min_replicas`` 0 the last pod goes after a stable window without traffic.
- cold start: a new pod serves ``cold_start_s`` after it is asked for; requests that arrive
  while no pod is ready wait in the activator for the first one. By default it is what
  ``bench/coldstart.py`` measured (``--cold-start``): the slower container's longest time to
  ready, since a replica's transformer and predictor start at once in pods of their own.
  ``--cold-start-s`` sets it outright, e.g. with your cluster's scheduling and image pull added.

This is a model of the autoscaler, not the autoscaler: what it prints is the picture the
measured figures imply beyond one machine, to size ``minReplicas``, ``maxReplicas`` and
``scaleTarget`` before a cluster is paid for.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio_maas import CHECKOUT

__all__ = [
    "AutoscalerSettings",
    "ReplicaProfile",
    "Tick",
    "load_trace",
    "measured_cold_start_s",
    "simulate",
    "synthetic_trace",
]

# The slowest recorded runs of the benchmark machine, not its best: a plan should hold when the
# machine is slow.
DEFAULT_PROFILE = CHECKOUT / "bench" / "results-5runs-2026-11-28.json"
DEFAULT_COLD_START = CHECKOUT / "bench" / "results-coldstart-2026-11-28-slim.json"


def measured_cold_start_s(path: Path) -> float:
    """Seconds from a replica's pods being asked for to ready, from ``bench/coldstart.py --json``:
    the longest ready time of either container (they start together, each in its own pod)."""
    report = json.loads(path.read_text())
    return max(float(report[container]["ready_s"]["max"]) for container in ("predictor", "transformer"))


@dataclass(frozen=True)
class ReplicaProfile:
    """One replica's measured curve: throughput (clips/s) and p50 latency (s) per concurrency."""

    concurrency: tuple[float, ...]
    clips_per_s: tuple[float, ...]
    latency_s: tuple[float, ...]

    @classmethod
    def from_bench(cls, path: Path) -> ReplicaProfile:
        levels = sorted(json.loads(path.read_text())["service"], key=lambda level: level["concurrency"])
        return cls(
            concurrency=tuple(float(level["concurrency"]) for level in levels),
            clips_per_s=tuple(float(level["clips_per_s"]) for level in levels),
            latency_s=tuple(float(level["p50_s"]) for level in levels),
        )

    @property
    def peak_clips_per_s(self) -> float:
        return max(self.clips_per_s)

    def serve(self, rate: float) -> tuple[float, float]:
        """Offered ``rate`` (clips/s, at most the peak) -> (requests in flight, latency in s)."""
        rates = np.maximum.accumulate(np.array(self.clips_per_s))  # the curve, made monotonic
        latency = float(np.interp(rate, rates, self.latency_s, left=self.latency_s[0]))
        return rate * latency, latency  # Little's law


@dataclass(frozen=True)
class AutoscalerSettings:
    metric: str = "concurrency"
    """What the autoscaler averages: ``concurrency`` (requests in flight) or ``rps`` (arrivals per second)."""
    target: float = 32.0
    """Per pod, of ``metric``: the chart's scaleTarget."""
    utilisation: float = 0.7
    """Knative's container-concurrency-target-percentage."""
    min_replicas: int = 1
    max_replicas: int = 10
    stable_window_s: int = 60
    panic_window_s: int = 6
    panic_threshold: float = 2.0
    cold_start_s: float = 10.0
    """From pod request to ready; ``audio-maas plan`` sets it from the cold-start measurement."""


@dataclass(frozen=True)
class Tick:
    t: int
    rate: float
    """Requests per second arriving."""
    ready: int
    desired: int
    panic: bool
    latency_s: float
    """What a request arriving in this second waits, queueing and cold start included."""
    queued: float


def simulate(trace: list[float], profile: ReplicaProfile, settings: AutoscalerSettings) -> list[Tick]:
    """One :class:`Tick` per second of ``trace`` (requests per second)."""
    ready = settings.min_replicas
    starting: deque[float] = deque()  # ready-at times of pods being started
    history: deque[float] = deque(maxlen=settings.stable_window_s)  # in-flight per second
    queue = 0.0
    panic_until = -1
    last_traffic = -settings.stable_window_s  # no traffic yet
    ticks = []
    for t, rate in enumerate(trace):
        while starting and starting[0] <= t:
            starting.popleft()
            ready += 1
        capacity = ready * profile.peak_clips_per_s
        offered = rate + queue
        served = min(offered, capacity)
        queue = offered - served
        if ready:
            in_flight_per_pod, latency = profile.serve(served / ready)
            in_flight = in_flight_per_pod * ready + queue
            latency += queue / capacity  # the queue drains at full capacity
        else:  # requests wait in Knative's activator for the first pod
            in_flight = queue
            latency = (starting[0] - t) if starting else settings.cold_start_s
        if rate > 0:
            last_traffic = t
        history.append(in_flight if settings.metric == "concurrency" else rate)
        stable = sum(history) / len(history)
        recent = list(history)[-settings.panic_window_s :]
        panic_load = sum(recent) / len(recent)
        per_pod = settings.target * settings.utilisation
        want_stable, want_panic = math.ceil(stable / per_pod), math.ceil(panic_load / per_pod)
        pods = ready + len(starting)
        if want_panic >= settings.panic_threshold * max(ready, 1) and want_panic > pods:
            panic_until = t + settings.stable_window_s
        panic = t < panic_until
        desired = max(want_panic, pods) if panic else want_stable
        if desired < pods:  # Knative's max scale-down rate: at most halve per decision
            desired = max(desired, pods // 2)
        if t - last_traffic < settings.stable_window_s:
            desired = max(desired, 1)  # scale to zero only after a stable window without traffic
        desired = min(max(desired, settings.min_replicas), settings.max_replicas)
        if desired > pods:
            starting.extend([t + settings.cold_start_s] * (desired - pods))
        elif desired < pods:
            cancelled = min(pods - desired, len(starting))
            for _ in range(cancelled):
                starting.pop()
            ready -= pods - desired - cancelled
        ticks.append(Tick(t, rate, ready, desired, panic, latency, queue))
    return ticks


def synthetic_trace(pattern: str, *, minutes: int, base_rps: float, peak_rps: float) -> list[float]:
    """``steady``, ``spike`` (base, then peak for a tenth of the time) or ``diurnal`` (a sine day)."""
    seconds = np.arange(minutes * 60)
    if pattern == "steady":
        rates = np.full(seconds.shape, base_rps)
    elif pattern == "spike":
        rates = np.where((seconds >= seconds.size * 0.4) & (seconds < seconds.size * 0.5), peak_rps, base_rps)
    elif pattern == "diurnal":
        rates = base_rps + (peak_rps - base_rps) * 0.5 * (1 - np.cos(2 * np.pi * seconds / seconds.size))
    else:
        raise ValueError(f"unknown pattern {pattern!r}: steady, spike or diurnal")
    return [float(rate) for rate in rates]


def load_trace(path: Path) -> list[float]:
    """A CSV with a ``requests_per_s`` column, one row per second."""
    with path.open() as file:
        return [float(row["requests_per_s"]) for row in csv.DictReader(file)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="audio-maas plan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", type=Path, default=DEFAULT_PROFILE, help="bench/serving.py --json output")
    parser.add_argument("--trace", type=Path, help="CSV with a requests_per_s column, one row per second")
    parser.add_argument("--pattern", default="spike", choices=["steady", "spike", "diurnal"])
    parser.add_argument("--minutes", type=int, default=20)
    parser.add_argument("--base-rps", type=float, default=200.0)
    parser.add_argument("--peak-rps", type=float, default=3000.0)
    defaults = AutoscalerSettings()
    parser.add_argument("--metric", choices=["concurrency", "rps"], default=defaults.metric, help="scaleMetric")
    parser.add_argument("--target", type=float, default=defaults.target, help="scaleTarget, per pod")
    parser.add_argument("--utilisation", type=float, default=defaults.utilisation)
    parser.add_argument("--min-replicas", type=int, default=defaults.min_replicas)
    parser.add_argument("--max-replicas", type=int, default=defaults.max_replicas)
    parser.add_argument("--cold-start", type=Path, default=DEFAULT_COLD_START, help="bench/coldstart.py --json output")
    parser.add_argument(
        "--cold-start-s", type=float, help="seconds from pod request to ready (default: the --cold-start measurement)"
    )
    parser.add_argument("--vcpus-per-replica", type=float, default=2.0, help="the bench machine's cores")
    parser.add_argument("--vcpu-hour-price", type=float, default=0.04, help="currency per vCPU-hour")
    parser.add_argument("--gpu-hour-price", type=float, default=0.0, help="per replica-hour, if it has a GPU")
    parser.add_argument("--every", type=int, default=60, help="print one line per this many seconds")
    args = parser.parse_args(argv)

    profile = ReplicaProfile.from_bench(args.profile)
    cold_start_s = args.cold_start_s if args.cold_start_s is not None else measured_cold_start_s(args.cold_start)
    settings = AutoscalerSettings(
        metric=args.metric, target=args.target, utilisation=args.utilisation, min_replicas=args.min_replicas,
        max_replicas=args.max_replicas, cold_start_s=cold_start_s,
    )  # fmt: skip
    trace = (
        load_trace(args.trace)
        if args.trace
        else synthetic_trace(args.pattern, minutes=args.minutes, base_rps=args.base_rps, peak_rps=args.peak_rps)
    )
    ticks = simulate(trace, profile, settings)
    cold_start_source = "given" if args.cold_start_s is not None else f"measured, {args.cold_start.name}"
    print(
        f"one replica: up to {profile.peak_clips_per_s:.0f} clips/s ({args.profile.name}), ready {cold_start_s:.1f} s "
        f"after it is asked for ({cold_start_source}); {len(trace)} s of traffic"
    )
    print(f"{'time':>6} {'req/s':>7} {'ready':>5} {'desired':>7} {'panic':>5} {'latency':>9} {'queued':>7}")
    for tick in ticks[:: args.every]:
        latency = f"{tick.latency_s * 1000:7.0f}ms" if tick.rate > 0 else f"{'-':>9}"
        print(
            f"{tick.t:>5}s {tick.rate:7.0f} {tick.ready:5d} {tick.desired:7d} {'yes' if tick.panic else '':>5} "
            f"{latency} {tick.queued:7.0f}"
        )
    weights = np.array([tick.rate for tick in ticks])
    latencies = np.array([tick.latency_s for tick in ticks])
    served = weights > 0
    order = np.argsort(latencies[served])
    cumulative = np.cumsum(weights[served][order]) / weights[served].sum()
    p50, p99 = (latencies[served][order][np.searchsorted(cumulative, q)] for q in (0.5, 0.99))
    replica_hours = sum(tick.ready for tick in ticks) / 3600
    cost = replica_hours * (args.vcpus_per_replica * args.vcpu_hour_price + args.gpu_hour_price)
    print(
        f"requests: {weights.sum():.0f}; latency per request p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; "
        f"peak {max(tick.ready for tick in ticks)} replicas; {replica_hours:.2f} replica-hours, cost {cost:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
