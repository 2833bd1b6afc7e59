"""Benchmark: opening report.html of a 5,000-image batch in headless Chromium (target <= 3 s).

Builds a batch of the three sample photos, then a report of 500 cards that
point at those folders (the page cost depends on the number of cards and
rows, not on the pictures, which load lazily). Prints the time from
navigation to the load event, and the same for a page holding only the
summary table (baseline, measured in the same run).

    python benchmarks/bench_report.py [--repeats 3] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aptviz.output.atomic import read_json  # noqa: E402
from aptviz.render.report import build_report  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]
TARGET = 3.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="aptviz-bench-report-"))
    try:
        out = work / "out"
        subprocess.run([sys.executable, "-m", "aptviz", str(ROOT / "sample_images"), "-m", "v2:1,1.2",
                        "-m", "budget:0.3,0.5", "-m", "v1", "-q", "-o", str(out)], check=True)
        rows = read_json(out / "summary.json")
        columns = list(rows[0])
        folders = [r["output"] for r in rows]
        folders = list(dict.fromkeys(folders))
        cards, many_rows = [], []
        for i in range(args.images):
            folder = folders[i % len(folders)]
            stats = read_json(Path(folder) / "stats.json")
            stats["image"]["path"] = f"{i}_{stats['image']['path']}"
            cards.append((Path(folder).name, stats))
            many_rows += [dict(r, image=f"{i}_{r['image']}") for r in rows if r["output"] == folder]
        (out / "big.html").write_text(build_report(many_rows, cards, columns, [("retention_vs_alpha.png", "Retention vs alpha")]))
        (out / "table.html").write_text(build_report(many_rows, [], columns))
        size = (out / "big.html").stat().st_size
        times = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
            for name in ("table.html", "big.html"):
                runs = []
                for _ in range(args.repeats):
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    t0 = time.perf_counter()
                    page.goto((out / name).as_uri(), wait_until="load")
                    page.wait_for_function(  # the table drawn and the first cards built
                        "document.querySelector('table.sum tbody tr') && "
                        "(!document.querySelector('.card') || document.querySelector('.card[data-done]'))"
                    )
                    runs.append(time.perf_counter() - t0)
                    page.close()
                times[name] = statistics.median(runs)
            browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    big, table = times["big.html"], times["table.html"]
    ok = big < TARGET
    verdict = "PASS" if ok else "FAIL"
    print(f"report.html, {args.images} image cards + table: {big:.3f}s  (target < {TARGET}s) {verdict}")
    print(f"page size: {size / 1e6:.1f} MB, {len(many_rows)} rows")
    print(f"baseline: the same summary table alone:        {table:.3f}s  ratio {big / table:.2f}")
    print(json.dumps({"report_s": round(big, 3), "table_only_s": round(table, 3)}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
