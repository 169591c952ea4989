"""The tables and the plot ``colorprop eval`` makes of its results: mean Lab-PSNR per method and N, each range
against flow with its losers, the confidence matte's and the key suggestions' summaries, PSNR per frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from colorprop.measure.matte import CalibrationTable


def summarise_confidence(results: dict, names: list[str]) -> dict:
    """Per method: error captured at 20 % per main range, its mean and minimum, the mean ceiling, and the
    calibration table pooled over the main ranges (rows and its calibration error)."""
    main = {n: c for n, c in results["clips"].items() if not c["report_apart"]}
    table = {}
    for name in names:
        checks = {
            n: c["methods"][name]["confidence"] for n, c in main.items() if "confidence" in c["methods"].get(name, {})
        }
        if not checks:
            continue
        captured = {n: ch["captured"] for n, ch in checks.items()}
        pooled = CalibrationTable()
        for ch in checks.values():
            pooled = pooled.merged(CalibrationTable.from_json(ch["calibration"]))
        table[name] = {
            "per_clip": captured,
            "mean": float(np.nanmean(list(captured.values()))),
            "min": float(np.nanmin(list(captured.values()))),
            "ceiling": float(np.nanmean([ch["captured_max"] for ch in checks.values()])),
            "calibration": pooled.rows(),
            "ece": pooled.ece(),
        }
    return table


def summarise_suggestions(results: dict, names: list[str]) -> dict:
    """Per method: share of main ranges whose top suggestion is among the 5 worst frames, and the mean
    gains (dB) of a key at the suggestion and at the midpoint."""
    main = {n: c for n, c in results["clips"].items() if not c["report_apart"]}
    table = {}
    for name in names:
        checks = {n: c["methods"][name]["suggest"] for n, c in main.items() if "suggest" in c["methods"].get(name, {})}
        if checks:
            table[name] = {
                "per_clip": checks,
                "hit_rate": float(np.mean([c["hit"] for c in checks.values()])),
                **{
                    k: float(np.mean([c[k] for c in checks.values()]))
                    for k in ("gain_top_db", "gain_mid_db", "advantage_db")
                },
            }
    return table


def format_confidence(results: dict) -> str:
    """The confidence measures as text: per method a line, then its pooled calibration table."""
    lines = []
    for name, check in results["confidence"].items():
        lines.append(
            f"confidence {name}: error captured at 20% = {check['mean']:.2f} mean, {check['min']:.2f} min "
            f"over main ranges (knows nothing: 0.20, ceiling {check['ceiling']:.2f}); "
            f"calibration error {check['ece']:.3f}"
        )
        rows = check["calibration"]
        cells = {
            "confidence bin": [f"{r['lo']:.1f}-{r['hi']:.1f}" for r in rows],
            "pixels": [f"{r['share']:.1%}" for r in rows],
            "mean confidence": ["–" if r["confidence"] is None else f"{r['confidence']:.2f}" for r in rows],
            "within 4 ab": ["–" if r["within"] is None else f"{r['within']:.1%}" for r in rows],
            "mean error (dE)": ["–" if r["error"] is None else f"{r['error']:.1f}" for r in rows],
        }
        lines += ["  " + f"{label:16s}" + "".join(f"{c:>9s}" for c in values) for label, values in cells.items()]
    for name, check in results.get("suggest", {}).items():
        lines.append(
            f"suggest-keys {name}: top suggestion among the 5 worst frames on {check['hit_rate']:.0%} of main "
            f"ranges; a key there gains {check['gain_top_db']:+.2f} dB, at the midpoint "
            f"{check['gain_mid_db']:+.2f} dB (mean over main ranges)"
        )
    return "\n".join(lines)


def summarise(results: dict, methods: list[str], ns) -> dict:
    """Mean over the main ranges (clips marked report_apart are left out) per method and N."""
    main = [c for c in results["clips"].values() if not c["report_apart"]]
    table = {}
    for method in methods:
        table[method] = {}
        for n in ns:
            values = [c["methods"][method]["mean_first_n"].get(str(n)) for c in main]
            values = [v for v in values if v is not None]
            if values:
                table[method][str(n)] = float(np.mean(values))
    return table


def format_table(results: dict, methods: list[str]) -> str:
    ns = results["ns"]
    lines = ["| method | " + " | ".join(f"N={n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
    for method in methods:
        row = results["mean"].get(method, {})
        lines.append(f"| {method} | " + " | ".join(f"{row[str(n)]:.2f}" if str(n) in row else "–" for n in ns) + " |")
    return "\n".join(lines)


LOSER_DB = 0.3  # a range is reported as a loser where a method is this far below flow at some N


def format_per_range(results: dict, methods: list[str], baseline: str = "flow") -> str:
    """Per range, each method against ``baseline`` (Markdown, after a blank line): its difference at every N and
    the worst one; the ranges more than LOSER_DB below the baseline at some N are listed as losers. Empty when
    the baseline was not run."""
    if baseline not in methods:
        return ""
    ns = [str(n) for n in results["ns"]]
    out = []
    for method in (m for m in methods if m not in (baseline, "gray")):
        lines = [
            f"| range | {baseline} N={ns[0]} | {method} N={ns[0]} | {baseline} N={ns[-1]} | {method} N={ns[-1]} | "
            + " | ".join(f"Δ N={n}" for n in ns)
            + " | worst Δ |",
            "|---|" + "---|" * (5 + len(ns)),
        ]
        losers = []
        for name, clip in results["clips"].items():
            base, mine = clip["methods"][baseline]["mean_first_n"], clip["methods"][method]["mean_first_n"]
            deltas = [mine[n] - base[n] for n in ns if n in mine and n in base]
            worst = min(deltas) if deltas else float("nan")
            label = f"{name} (apart)" if clip["report_apart"] else name
            lines.append(
                f"| {label} | {base.get(ns[0], float('nan')):.2f} | {mine.get(ns[0], float('nan')):.2f} | "
                f"{base.get(ns[-1], float('nan')):.2f} | {mine.get(ns[-1], float('nan')):.2f} | "
                + " | ".join(f"{d:+.2f}" for d in deltas)
                + f" | {worst:+.2f} |"
            )
            if worst < -LOSER_DB:
                losers.append(f"{label} {worst:+.2f}")
        out.append(
            "\n".join(lines)
            + f"\n\n{method} more than {LOSER_DB} dB below {baseline} at some N: "
            + (", ".join(losers) if losers else "none")
        )
    return "".join("\n\n" + block for block in out)


def plot_per_frame(results: dict, methods: list[str], path: Path) -> Path:
    """Figure 9: mean Lab-PSNR per frame index (over main ranges) for each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = [c for c in results["clips"].values() if not c["report_apart"]]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for method in methods:
        curves = [c["methods"][method]["per_frame"] for c in main]
        length = min(len(c) for c in curves)
        mean = np.mean([c[:length] for c in curves], axis=0)
        ax.plot(np.arange(1, length + 1), mean, label=method)
    ax.set_xlabel("frames after the key")
    ax.set_ylabel("Lab-PSNR (dB), mean over the ranges")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
