"""The capacity planner: a model of Knative's concurrency autoscaler over a measured replica."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from audio_maas.cli import main
from audio_maas.deploy.capacity import (
    DEFAULT_COLD_START,
    AutoscalerSettings,
    ReplicaProfile,
    measured_cold_start_s,
    simulate,
    synthetic_trace,
)

PROFILE = ReplicaProfile(concurrency=(1, 8, 32), clips_per_s=(100, 400, 500), latency_s=(0.01, 0.02, 0.064))
"""A replica that saturates at 500 clips/s; latency grows from 10 ms to 64 ms on the way."""


def test_the_profile_interpolates_the_measured_curve_and_obeys_littles_law() -> None:
    assert PROFILE.serve(100) == pytest.approx((1.0, 0.01))
    in_flight, latency = PROFILE.serve(450)
    assert latency == pytest.approx(0.042) and in_flight == pytest.approx(450 * 0.042)


def test_steady_load_settles_where_desired_pods_equal_ready_pods() -> None:
    """450 req/s aiming at 1.4 in flight per pod: one pod runs hot (18.9 in flight, wants 14, gets
    the maximum 10); four pods carry 4.7 in flight, which is what four pods want."""
    settings = AutoscalerSettings(target=2, utilisation=0.7, min_replicas=1, max_replicas=10, cold_start_s=5)
    ticks = simulate([450.0] * 600, PROFILE, settings)
    assert max(tick.ready for tick in ticks) == 10
    assert {tick.ready for tick in ticks[-120:]} == {tick.desired for tick in ticks[-120:]} == {4}
    assert ticks[-1].queued == 0 and ticks[-1].latency_s == pytest.approx(0.01 + 12.5 / 300 * 0.01)


def test_a_target_far_below_saturation_makes_the_autoscaler_flap() -> None:
    """The same load aiming at 5.6 in flight: four pods look idle (4.7), one is swamped (18.9),
    and the 60 s average keeps overshooting the two pods that would hold. The planner shows it."""
    settings = AutoscalerSettings(target=8, utilisation=0.7, min_replicas=1, max_replicas=10, cold_start_s=5)
    ticks = simulate([450.0] * 600, PROFILE, settings)
    assert {tick.ready for tick in ticks[-120:]} >= {1, 4}


def test_a_spike_panics_scales_up_within_the_panic_window_and_never_down_during_panic() -> None:
    settings = AutoscalerSettings(target=8, utilisation=0.7, min_replicas=1, max_replicas=20, cold_start_s=5)
    trace = [100.0] * 120 + [3000.0] * 60 + [100.0] * 240
    ticks = simulate(trace, PROFILE, settings)
    first_panic = next(tick.t for tick in ticks if tick.panic)
    assert 120 <= first_panic <= 120 + settings.panic_window_s
    panicking = [tick for tick in ticks if tick.panic]
    assert all(b.ready >= a.ready for a, b in itertools.pairwise(panicking) if b.t == a.t + 1)
    assert max(tick.ready for tick in ticks) >= math.ceil(3000 / PROFILE.peak_clips_per_s)
    assert ticks[-1].ready == 1 and not ticks[-1].panic  # and back down once the spike is over


def test_scale_to_zero_waits_a_stable_window_and_the_next_request_pays_the_cold_start() -> None:
    settings = AutoscalerSettings(target=8, min_replicas=0, max_replicas=5, cold_start_s=12)
    trace = [50.0] * 30 + [0.0] * 150 + [50.0] * 30
    ticks = simulate(trace, PROFILE, settings)
    zero_at = next(tick.t for tick in ticks if tick.ready == 0 and tick.t > 30)
    assert 29 + settings.stable_window_s <= zero_at <= 29 + settings.stable_window_s + 2
    assert ticks[180].ready == 0 and ticks[180].latency_s == pytest.approx(12)
    assert ticks[185].latency_s == pytest.approx(7)  # still waiting for the first pod in the activator
    assert ticks[191].ready == 0 and ticks[192].ready >= 1


def test_replicas_stay_within_bounds_and_overload_shows_as_queueing() -> None:
    settings = AutoscalerSettings(target=8, min_replicas=2, max_replicas=3, cold_start_s=5)
    ticks = simulate([2000.0] * 120, PROFILE, settings)
    assert all(2 <= tick.ready <= 3 for tick in ticks)
    assert ticks[-1].queued > ticks[60].queued > 0  # 3 x 500 clips/s cannot carry 2000 req/s
    assert ticks[-1].latency_s > 1


def test_plan_command_reads_the_bench_figures_and_prints_cost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    levels = zip(PROFILE.concurrency, PROFILE.clips_per_s, PROFILE.latency_s, strict=True)
    bench = {"service": [{"concurrency": c, "clips_per_s": rate, "p50_s": p50} for c, rate, p50 in levels]}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    cold_start = {"predictor": {"ready_s": {"median": 3.7, "max": 3.9}}, "transformer": {"ready_s": {"max": 4.1}}}
    (tmp_path / "coldstart.json").write_text(json.dumps(cold_start))
    code = main(["plan", "--profile", str(tmp_path / "bench.json"), "--cold-start", str(tmp_path / "coldstart.json"),
                 "--pattern", "steady", "--minutes", "2", "--base-rps", "450", "--target", "8",
                 "--vcpu-hour-price", "0.05"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(
        "one replica: up to 500 clips/s (bench.json), ready 4.1 s after it is asked for (measured, coldstart.json); "
        "120 s of traffic"
    )
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("requests: 54000; latency per request p50 ")
    replica_hours = float(summary.split(" replica-hours")[0].rsplit(" ", 1)[1])
    assert summary.endswith(f"cost {replica_hours * 2 * 0.05:.2f}")


def test_synthetic_traces_have_their_shape() -> None:
    spike = synthetic_trace("spike", minutes=10, base_rps=10, peak_rps=100)
    assert len(spike) == 600 and spike[0] == 10 and spike[270] == 100 and spike[330] == 10
    diurnal = synthetic_trace("diurnal", minutes=10, base_rps=0, peak_rps=100)
    assert diurnal[0] == 0 and diurnal[300] == pytest.approx(100)
    with pytest.raises(ValueError, match="unknown pattern"):
        synthetic_trace("weekly", minutes=1, base_rps=0, peak_rps=1)


def test_plan_reads_the_committed_cold_start_measurement() -> None:
    """The default ``--cold-start`` is the committed ``bench/coldstart.py`` result, with both containers."""
    assert 1 < measured_cold_start_s(DEFAULT_COLD_START) < 60
