"""Keep results.json's run rows true to what their names say.

Every run row written now carries ``provenance`` (commit, machine, date, ``config_sha256`` of its resolved
config, ``common.provenance``). This marks the rest, in place:

- a row with no provenance: ``provenance: {"unverified": ...}`` (recorded before rows carried it);
- a row whose arguments are a config file alone (with at most a seed), recorded without a hash and the file
  changed since: ``stale``, naming the file's last change; such a row meant "the config as shipped" then;
- a row with a hash that the config no longer matches: ``stale``.

    python benchmarks/records.py            # mark, then print what was marked
"""

from __future__ import annotations

import json
import subprocess

from common import RESULTS, ROOT, config_sha256

UNVERIFIED = "recorded before run rows carried a commit and a config hash"


def run_tables(results: dict) -> dict[str, dict]:
    """The entries whose value is a table of run rows (each with ``train_args``)."""
    return {key: entry["value"] for key, entry in results.items()
            if isinstance(entry, dict) and isinstance(entry.get("value"), dict)
            and any(isinstance(row, dict) and "train_args" in row for row in entry["value"].values())}  # fmt: skip


def config_alone(args: str) -> str | None:
    """The config file when ``args`` is only a config (and a seed), else ``None``."""
    parts = args.split()
    if not parts or not parts[0].startswith("configs/"):
        return None
    rest = [p for p in parts[1:] if not p.lstrip("-").isdigit()]
    return parts[0] if set(rest) <= {"--seed_everything", "--data.seed"} else None


def last_change(path: str) -> str:
    done = subprocess.run(["git", "log", "-1", "--format=%h %ad", "--date=short", "--", path], cwd=ROOT,
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout.strip() or "unknown"


def stale_reason(row: dict) -> str | None:
    args = row.get("train_args", "")
    recorded = (row.get("provenance") or {}).get("config_sha256")
    if recorded:
        if recorded != config_sha256(args):
            return f"its config changed after it was measured (hash {recorded[:12]} no longer matches)"
        return None
    config = config_alone(args)
    if config:
        return (f"measured with {config} as it was then, without a hash; the file has changed since (last: "
                f"{last_change(config)}), so this row no longer describes it")  # fmt: skip
    return None


def mark(results: dict) -> list[str]:
    marked = []
    for key, table in run_tables(results).items():
        for name, row in table.items():
            if not isinstance(row, dict) or "train_args" not in row:
                continue
            row.setdefault("provenance", {"unverified": UNVERIFIED})
            reason = stale_reason(row)
            if reason and row.get("stale") != reason:
                row["stale"] = reason
                marked.append(f"{key}.{name}: {reason}")
    return marked


def main() -> None:
    results = json.loads(RESULTS.read_text())
    for line in mark(results):
        print(line)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(RESULTS)


if __name__ == "__main__":
    main()
