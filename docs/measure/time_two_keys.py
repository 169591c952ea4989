"""One `full` step at 480x270 with one key and with two keys (join_keys), fp32 and bf16 (docs/KEYS.md):

.venv/bin/python docs/measure/time_two_keys.py
"""

import time, numpy as np, cv2, statistics
from colorprop.engine.engine import Engine
from colorprop.engine.propagate import Propagator

rng = np.random.default_rng(0)
L = cv2.GaussianBlur(rng.random((270, 480)).astype(np.float32), (0, 0), 3) * 100
ab = cv2.GaussianBlur(rng.random((270, 480, 2)).astype(np.float32), (0, 0), 3) * 40 - 20
for prec in ("fp32", "bf16"):
    e = Engine.load(precision=prec)
    for others in ([], [(np.roll(L, 5, 0), ab)]):
        p = Propagator("full", L, ab, e.models, other_keys=others)
        L2 = np.roll(L, 2, axis=1)
        p.step(L2)
        t = []
        for _ in range(5):
            t0 = time.perf_counter()
            p.step(L2)
            t.append(time.perf_counter() - t0)
        print(prec, f"{1 + len(others)} key(s)", f"median {statistics.median(t):.3f} s/step at 480x270")
