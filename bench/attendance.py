"""Benchmark: PMOOE found from attendance data, 1,000,000 register marks (issue 19, part 2).
Not a test: it measures, it asserts nothing.

    python bench/attendance.py                 # 100,000 and 1,000,000 marks
    python bench/attendance.py --marks 250000  # one size

For each size, in a fresh process (so the peak resident memory is that run's alone): write a
CSV of a school year's marks (380 sessions a pupil; every 25th pupil absent long enough to
meet the continuous-absence rule), import it into a fresh SQLite case database and assess
every pupil (``tasks.attendance``: what the ``attendance`` flow runs, without Prefect). It
prints the wall time of each step and the process's peak resident memory: if the import
streams, the peak is the same for both sizes.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _one(marks: int, folder: Path) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from sqlmodel import Session

    from models import School, get_engine
    from models.migrate import upgrade
    from tasks.attendance import assess_pupils, import_marks
    from tests.attendance.attkit import HEADER, school_days, upn
    from tests.la_configs import attendance_config

    days = school_days(date(2025, 9, 1), 190)
    path = folder / "marks.csv"
    pupils = -(-marks // (2 * len(days)))
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        written = 0
        for n in range(pupils):
            u = upn(n)
            absent = range(60, 110) if n % 25 == 0 else range(0)
            for i, d in enumerate(days):
                for s in ("AM", "PM"):
                    if written == marks:
                        break
                    w.writerow([u, "116001", d.isoformat(), s, "N" if i in absent else "/",
                                "", "", "Test", "Pupil", "2014-03-17"])
                    written += 1
    url = f"sqlite:///{folder / 'cme.db'}"
    upgrade(url)
    with Session(get_engine(url)) as s:
        s.add(School(urn="116001", name="Bench School", la_code="850",
                     email="office@bench.example.org"))
        s.commit()
    cfg = attendance_config(db_url=url)
    t0 = time.perf_counter()
    imported = import_marks(path, cfg)
    t1 = time.perf_counter()
    assessed = assess_pupils(cfg, date(2026, 7, 20))
    t2 = time.perf_counter()
    return {"marks": imported.rows, "pupils": pupils, "cases": assessed.cases_created,
            "import_s": round(t1 - t0, 1), "assess_s": round(t2 - t1, 1),
            "marks_per_s": round(imported.rows / (t1 - t0)),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--marks", type=int, action="append", help="marks in the file (repeatable)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(_one(args.marks[0], Path(tmp))))
        return
    rows = []
    for n in args.marks or [100_000, 1_000_000]:
        out = subprocess.run([sys.executable, __file__, "--child", "--marks", str(n)],  # noqa: S603 - this script, a number
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    print("\n| marks | pupils | cases | import (s) | marks/s | assess (s) | peak RSS (MiB) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['marks']:,} | {r['pupils']:,} | {r['cases']} | {r['import_s']} | "
              f"{r['marks_per_s']:,} | {r['assess_s']} | {r['peak_rss_mib']} |")


if __name__ == "__main__":
    main()
