"""`colorprop bench` on a tiny plate: valid JSON with every stage, for the learned method and flow.

Untrained networks (built here, written as a weights folder) time exactly like trained ones; no speed
is asserted, only that the measurement runs, times every stage it claims and reports figures that agree
with each other (stage sum, interval vs. whole run), as docs/BENCHMARKS.md quotes them.
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from colorprop.measure import bench
from colorprop.engine import weights
from colorprop.errors import InputError
from colorprop.engine.nets.fusion_net import FusionConfig, FusionNet
from colorprop.engine.nets.global_net import GlobalConfig
from colorprop.engine.nets.local_net import LocalNet, LocalNetConfig


@pytest.fixture(scope="module")
def untrained_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    local_cfg = LocalNetConfig(channels=(8, 16), kernel_size=5, use_ab_prev=True)
    fusion_cfg = FusionConfig(width=8)
    networks = {
        "local": weights.write_network(folder, "local", LocalNet(local_cfg).state_dict(), local_cfg.to_dict()),
        "global": {"file": None, "sha256": None, "config": GlobalConfig(features="tiny").to_dict()},
        "fusion": weights.write_network(folder, "fusion", FusionNet(fusion_cfg).state_dict(), fusion_cfg.to_dict()),
    }
    weights.write_manifest(folder, {"name": "colorprop-test", "version": "0", "networks": networks})
    return folder


def test_tiny_bench_writes_json_with_every_stage(tmp_path, untrained_weights, capsys):
    out = tmp_path / "bench.json"
    args = SimpleNamespace(
        sizes="160x96", repeats=1, json=str(out), device="cpu", working_width=64, weights=str(untrained_weights)
    )
    assert bench.run_bench_command(args) == 0
    results = json.loads(out.read_text())
    assert results["stages"] == list(bench.STAGES)
    assert results["machine"]["cores"] >= 1
    rows = {r["method"]: r for r in results["rows"]}
    assert set(rows) == {"full", "flow"}
    for method, row in rows.items():
        assert row["size"] == "160x96" and row["working_size"] == [64, 38]
        assert set(row["stages"]) == set(bench.STAGES)
        learned_only = {"F_s", "F_f"}
        for stage, seconds in row["stages"].items():
            if method == "flow" and stage in learned_only:
                assert seconds is None
            else:  # timed around real work; a stage that the clock never saw would read 0.0
                assert seconds is not None and seconds > 0.0, (method, stage)
        assert row["stage_sum"] == pytest.approx(sum(s for s in row["stages"].values() if s is not None))
        # end_to_end is the median interval between finished frames: below the whole run's time per frame x frames
        assert 0 < row["end_to_end"] < row["end_to_end_mean_with_key"] * row["frames"]
        # the CPU every thread spent over those intervals, and the cores it kept busy on average
        assert row["end_to_end_cpu"] > 0 and 0 < row["cpu_use"] <= results["machine"]["usable_cpus"] + 0.5
        assert row["peak_rss_mib"] > 0
        assert row["channels_out"] == ["R", "G", "B", "A"]  # pass-through channel survives
    assert set(results["ratio_to_flow"]) == {"160x96/full/cpu/fp32"}
    table = capsys.readouterr().out
    assert "| 160x96 | full |" in table and "| 160x96 | flow |" in table


def test_sizes_are_checked():
    assert bench.parse_sizes("854x480, 64X32") == [(854, 480), (64, 32)]
    with pytest.raises(InputError, match="WIDTHxHEIGHT"):
        bench.parse_sizes("1080p")


def test_busy_neighbour_is_pinned_busy_and_gone_after():
    from colorprop.measure.neighbour import BusyNeighbour

    cpu = min(os.sched_getaffinity(0))
    with BusyNeighbour(seconds=120, cpu=cpu) as busy:
        pid = busy.proc.pid
        assert os.sched_getaffinity(pid) == {cpu}
        assert busy.proc.poll() is None
    assert busy.proc.returncode is not None  # stopped with the block, not left to its own time bound
    assert busy.cpu_share is not None and busy.cpu_share > 0


def test_tiny_bench_beside_a_busy_neighbour_reports_both(tmp_path, untrained_weights, capsys):
    out = tmp_path / "bench.json"
    args = SimpleNamespace(
        sizes="160x96",
        repeats=1,
        json=str(out),
        device="cpu",
        working_width=64,
        weights=str(untrained_weights),
        methods="full",
        busy_neighbour=True,
        threads=1,
    )
    assert bench.run_bench_command(args) == 0
    results = json.loads(out.read_text())
    assert results["threads"] == 1
    assert [(r["method"], r["load"], r["torch_threads"]) for r in results["rows"]] == [
        ("full", "idle", 1),
        ("full", bench.BUSY, 1),
    ]
    idle, busy = results["rows"]
    assert results["busy_to_idle"] == {"160x96/full/cpu/fp32": pytest.approx(busy["end_to_end"] / idle["end_to_end"])}
    assert results["neighbour"]["cpu"] in os.sched_getaffinity(0) and len(results["neighbour"]["cpu_share"]) == 1
    table = capsys.readouterr().out
    assert "| idle | 1 |" in table and f"| {bench.BUSY} | {busy['end_to_end'] / idle['end_to_end']:.2f} |" in table
