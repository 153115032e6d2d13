"""Metrics as text for the terminal."""

from __future__ import annotations


def format_metrics_table(metrics: dict, title: str = "metrics") -> str:
    """COCO metrics and per-class AP as a small text table."""
    if not metrics:
        return f"{title}: none (no validation ran)"
    names = [("AP", "map"), ("AP50", "map50"), ("AP75", "map75"), ("APs", "map_small"), ("APm", "map_medium"),
             ("APl", "map_large"), ("AR100", "mar_100")]  # fmt: skip
    lines = [title, "  ".join(f"{label:>6}" for label, _ in names),
             "  ".join(f"{metrics.get(key, float('nan')):6.3f}" for _, key in names)]  # fmt: skip
    per_class = metrics.get("per_class", {})
    if per_class:
        width = max(len(n) for n in per_class)
        lines.append("per-class AP@[.5:.95]:")
        lines += [
            f"  {name:<{width}}  {ap:6.3f}" if ap >= 0 else f"  {name:<{width}}     -" for name, ap in per_class.items()
        ]
    return "\n".join(lines)
