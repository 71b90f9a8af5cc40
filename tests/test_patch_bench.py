"""Patch benchmark bookkeeping: gaps vs full per seed, bytes vs the FULL patch, target."""
import numpy as np

from toolchain.patch.bench import TARGET, format_table, summarize


def _rows():
    rows = []
    for seed, full_acc in ((0, 0.97), (1, 0.98)):
        for r in (1, 2):
            rows.append(dict(seed=seed, round=r, method="full", budget=1.0, accuracy=full_acc,
                             patch_bytes=10000, delta_with_old_bytes=20000,
                             delta_no_old_bytes=15000, weights_changed=900))
            rows.append(dict(seed=seed, round=r, method="dpu", budget=0.03,
                             accuracy=full_acc - 0.002 * (seed + 1), patch_bytes=1200,
                             delta_with_old_bytes=1200, delta_no_old_bytes=800,
                             weights_changed=30))
            rows.append(dict(seed=seed, round=r, method="random", budget=0.03,
                             accuracy=full_acc - 0.02, patch_bytes=1100,
                             delta_with_old_bytes=1100, delta_no_old_bytes=700,
                             weights_changed=25))
    return rows


def test_summary_and_target():
    methods = [("full", 1.0), ("dpu", 0.03), ("random", 0.03)]
    s = summarize(_rows(), methods, (0, 1))
    d = s["dpu@0.03"]
    assert np.allclose(d["gap_pp_per_seed"], [-0.2, -0.4])
    assert np.isclose(d["gap_pp"], -0.3) and np.isclose(d["gap_std"], np.std([-0.2, -0.4], ddof=1))
    assert np.isclose(d["accuracy_pct"], 97.2)
    assert np.isclose(d["bytes_fraction_no_old"], 0.08) and np.isclose(d["bytes_fraction_with_old"], 0.12)
    assert d["gap_pp"] >= TARGET["gap_pp"]
    assert d["target_met_no_old"] and not d["target_met_with_old"]
    assert np.isclose(s["random@0.03"]["gap_pp"], -2.0)
    assert s["full@1"]["patch_bytes"] == 10000
    t = format_table(s, 10000)
    assert "| DPU k = 3 % | 97.20 ± 0.57 % | -0.30 ± 0.14 pp | 800 B = 8.0 % | 1,200 B = 12.0 % |" in t
