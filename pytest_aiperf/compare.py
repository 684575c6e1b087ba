"""``aiperf compare-hardware OLD NEW [--root expectations]``: every case recorded under two hardware keys, side by
side.

For each chapter file present under both keys, each case id recorded in both: both speedups with their noise
margins, both arms' median times under each key and their ratio (NEW over OLD: below 1, the arm runs faster on
NEW), and whether the technique gains or loses on NEW beyond both margins (the ratio of speedups is outside
``1 + max(margin_old, margin_new)`` either way). Then the techniques (case names) that gain or lose, the GPUs the
entries were recorded on, and the measured ceilings where the entries' provenance holds them (``ceilings``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from pytest_aiperf.expectations_io import read_document
from pytest_aiperf.expectations_rules import percent
from pytest_aiperf.expectations_schema import ExpectationsError, entry_problem
from pytest_aiperf.report import NONE, format_ms, format_ratio

HEADERS = ("case", "speedup {old}", "speedup {new}", "{new}/{old}", "baseline {old} -> {new} (ratio)",
           "optimized {old} -> {new} (ratio)", "on {new}")
DESCRIPTION = ("Line up every case recorded under two hardware keys (same chapter file, same case id): both speedups "
               "with their noise margins, both arms' median times and their ratio NEW/OLD (below 1: faster on NEW), "
               "and whether the technique gains or loses on NEW beyond both margins.")


@dataclass(frozen=True)
class Row:
    """One case recorded under both keys: its entries' numbers and what they say about NEW against OLD."""

    chapter: str
    key: str
    old: dict[str, Any]
    new: dict[str, Any]

    @property
    def change(self) -> float:
        """NEW's speedup over OLD's."""
        return self.new["speedup"] / self.old["speedup"]

    @property
    def outcome(self) -> str:
        """``gains`` or ``loses`` beyond both margins, else ``same``."""
        bound = 1 + max(self.old["noise_margin"], self.new["noise_margin"])
        return "gains" if self.change > bound else "loses" if self.change < 1 / bound else "same"

    def arm_ratio(self, arm: str) -> float | None:
        old, new = (entry.get(arm, {}).get("median_ms") for entry in (self.old, self.new))
        return new / old if old and new else None


def read_key(root: Path, hardware: str) -> tuple[dict[str, dict[str, dict]], list[str]]:
    """``{chapter: {case: entry}}`` of one hardware key's folder, and a line for each file or entry left out
    because it cannot be read."""
    chapters, problems = {}, []
    for path in sorted((Path(root) / hardware).glob("*.json")):
        try:
            doc = read_document(path, hardware, path.stem)
        except ExpectationsError as exc:
            problems.append(str(exc))
            continue
        entries = {}
        for key, entry in (doc or {}).get("entries", {}).items():
            problem = entry_problem(entry)
            if problem is None:
                entries[key] = entry
            else:
                problems.append(f"{path}: entry {key!r} {problem}; left out")
        chapters[path.stem] = entries
    return chapters, problems


def line_up(old: dict[str, dict[str, dict]], new: dict[str, dict[str, dict]]) -> list[Row]:
    """The cases recorded under both keys (same chapter file, same case id), by chapter and case id."""
    return [Row(chapter, key, old[chapter][key], new[chapter][key])
            for chapter in sorted(set(old) & set(new)) for key in sorted(set(old[chapter]) & set(new[chapter]))]


def technique(key: str) -> str:
    """The case name of an id: ``batched_matmul-fp32-64x128`` -> ``batched_matmul``."""
    return key.split("-", 1)[0]


def _speedup(entry: dict[str, Any]) -> str:
    return f"{format_ratio(entry['speedup'])}x {percent(entry['noise_margin'])}"


def _arm(row: Row, arm: str) -> str:
    old, new = (entry.get(arm, {}).get("median_ms") for entry in (row.old, row.new))
    ratio = row.arm_ratio(arm)
    return f"{format_ms(old)} -> {format_ms(new)} ({NONE if ratio is None else format_ratio(ratio) + 'x'})"


def tables(rows: Sequence[Row], old: str, new: str) -> str:
    """One table per chapter, under the chapter's name."""
    headers = [h.format(old=old, new=new) for h in HEADERS]
    blocks = []
    for chapter in dict.fromkeys(row.chapter for row in rows):
        cells = [(row.key, _speedup(row.old), _speedup(row.new), f"{format_ratio(row.change)}x",
                  _arm(row, "baseline"), _arm(row, "optimized"), row.outcome) for row in rows if row.chapter == chapter]
        blocks.append(f"{chapter}\n" + tabulate(cells, headers=headers, tablefmt="simple", disable_numparse=True))
    return "\n\n".join(blocks)


def verdicts(rows: Sequence[Row], new: str) -> list[str]:
    """One line each for the techniques with a case that gains on NEW and with one that loses, naming their cases."""
    lines = []
    for outcome in ("gains", "loses"):
        found: dict[str, list[str]] = {}
        for row in rows:
            if row.outcome == outcome:
                found.setdefault(technique(row.key), []).append(row.key)
        if found:
            listed = "; ".join(f"{name} ({', '.join(keys)})" for name, keys in sorted(found.items()))
            lines.append(f"{outcome[:-1]} on {new} beyond both margins: {listed}")
    return lines or [f"no technique gains or loses on {new} beyond both margins"]


def machines(chapters: dict[str, dict[str, dict]], hardware: str) -> str:
    """The GPUs, drivers and torch builds a key's entries were recorded with, and their ceilings where stored."""
    provenance = [entry.get("provenance") or {} for entries in chapters.values() for entry in entries.values()]
    facts = []
    for field in ("gpu", "driver", "torch"):
        values = sorted({str(p[field]) for p in provenance if p.get(field)})
        if values:
            facts.append(f"{field} {', '.join(values)}")
    roofs = [p["ceilings"] for p in provenance if isinstance(p.get("ceilings"), dict)]
    if roofs:
        copy = max((r.get("copy_gbps") or 0 for r in roofs), default=0)
        peaks = {name: value for r in roofs for name, value in (r.get("matmul_tflops") or {}).items() if value}
        facts.append("ceilings " + ", ".join([f"copy {copy:.0f} GB/s"] * bool(copy) +
                                             [f"{n} {v:.3g} TFLOP/s" for n, v in sorted(peaks.items())]))
    else:
        facts.append("no measured ceilings stored with the entries")
    return f"{hardware}: " + "; ".join(facts)


def compare(root: Path, old: str, new: str) -> tuple[str, int]:
    """The report's text and the exit status (1 where no case is recorded under both keys)."""
    old_chapters, old_problems = read_key(root, old)
    new_chapters, new_problems = read_key(root, new)
    rows = line_up(old_chapters, new_chapters)
    only = [(key, sum(len(set(entries) - set(other.get(chapter, {}))) for chapter, entries in mine.items()))
            for key, mine, other in ((old, old_chapters, new_chapters), (new, new_chapters, old_chapters))]
    lines = [machines(old_chapters, old), machines(new_chapters, new), ""]
    if rows:
        lines += [tables(rows, old, new), "", *verdicts(rows, new)]
    else:
        lines.append(f"no case is recorded under both {root / old} and {root / new}")
    lines += [f"recorded only under {key}: {count} case{'s' * (count != 1)}" for key, count in only if count]
    lines += old_problems + new_problems
    return "\n".join(lines), 0 if rows else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aiperf", description="pytest-aiperf's commands on recorded expectations")
    commands = parser.add_subparsers(dest="command", required=True)
    side = commands.add_parser("compare-hardware", help="line up the cases recorded under two hardware keys",
                               description=DESCRIPTION)
    side.add_argument("old", help="hardware key compared against, e.g. h100")
    side.add_argument("new", help="hardware key compared, e.g. h200")
    side.add_argument("--root", default="expectations", type=Path,
                      help="folder of expectation files (default: %(default)s)")
    args = parser.parse_args(argv)
    for key in (args.old, args.new):
        if not (args.root / key).is_dir():
            print(f"aiperf: no folder {args.root / key}", file=sys.stderr)
            return 2
    text, status = compare(args.root, args.old, args.new)
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
