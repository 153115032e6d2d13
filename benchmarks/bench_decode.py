"""decode + NMS alone, per image: S = 7 and 14, B = 2, C = 20 and 80, batch 8, at detect's default
threshold (0.25) and at the evaluation threshold (0.001, the worst case: up to 1000 candidates each).

    python benchmarks/bench_decode.py
"""

from __future__ import annotations

import torch
from common import QUICK, interleaved, record

from gridyolo.core.decode import decode_grid


def main() -> dict:
    torch.manual_seed(0)
    rows, batch = {}, 8
    for s in (7, 14):
        for c in (20, 80):
            raw = torch.randn(batch, s, s, 2 * 5 + c) * 2.0  # varied confidences and class peaks
            sizes = torch.tensor([[480.0, 640.0]] * batch)
            params = torch.tensor([[0.7, 0.7, 0.0, 56.0]] * batch)
            candidates = {
                f"conf{t}": (lambda t=t, r=raw, p=params, z=sizes: decode_grid(r, 2, (448, 448), p, z, t, 0.45, 100))
                for t in (0.25, 0.001)
            }
            times = interleaved(candidates, repeats=20 if QUICK else 100)
            for name, seconds in times.items():
                rows[f"S{s}_C{c}_{name}"] = round(seconds / batch * 1000, 4)
                print(f"S={s:2d} C={c:2d} {name:9s} {seconds / batch * 1000:.3f} ms/image")
    record(
        "decode_nms_ms",
        rows["S14_C80_conf0.25"],
        "python benchmarks/bench_decode.py",
        detail_ms_per_image=rows,
        note="S=14, B=2, C=80, batch 8, conf 0.25 (detect default); eval 0.001 in detail",
    )
    return rows


if __name__ == "__main__":
    main()
