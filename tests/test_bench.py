"""`ehrmind bench`: the ceiling it measures and the workloads it sets against it."""
import json

from ehrmind import bench


def test_ceiling_is_the_best_round_and_keeps_the_median():
    rounds = bench.matmul_ceiling(16, 32, seconds=0.01, rounds=3, sizes=(4, 8))
    assert set(rounds) == {"best", "median"}
    for name in ("fp32", "bf16"):
        for m in (4, 8):
            assert rounds["best"][name][m] >= rounds["median"][name][m] > 0
    assert bench.bandwidth(megabytes=4, reps=3) > 0


def test_bench_reports_each_workload_against_the_best_rounds(tmp_path, tiny_model):
    out = tmp_path / "bench.json"
    checkpoint = json.loads(tiny_model.read_text())["path"]
    result = bench.run(checkpoint, [2], new_tokens=4, passk_n=2, out=out, training=False)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    best = result["matmul_gflops"]
    assert all(best[name][m] >= result["matmul_gflops_median"][name][m] for name in best for m in best[name])
    names = [w["workload"] for w in result["workloads"]]
    assert names == ["greedy evaluation, batch 2", "pass@k sampling, 1 x n=2"]
    assert set(best["bf16"]) == {2, 8, 64, 512, 2048}   # the batch's decode rows measured too
    for w in result["workloads"]:
        assert w["tokens"] > 0 and w["prompt_tokens"] > 0 and 0 < w["prefill_share"] < 1
        peak = max(best[w["precision"]].values())
        assert abs(w["fraction_of_ceiling"] - w["gflops"] / peak) < 1e-3
        # the bound runs every FLOP at one of the measured rates: between the lowest and the peak
        per_token = w["gflops"] / w["tokens_per_s"]   # GFLOP per generated token
        lowest = min(best[w["precision"]].values())
        assert lowest / per_token * 0.99 <= w["matmul_bound"] <= peak / per_token * 1.01


def test_the_matmul_bound_takes_the_rate_at_the_rows_a_matmul_has():
    by_m = {8: 100.0, 32: 300.0, 2048: 900.0}
    assert [bench._rate_at(by_m, rows) for rows in (1, 8, 9, 32, 500, 9000)] == [100, 100, 300, 300, 900, 900]
