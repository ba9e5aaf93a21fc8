#!/usr/bin/env python3
"""Run `tiermesh bench federated` (a 77-node loopback mesh) and centralised DuckDB on the same
CSV files, in the same run; check every answer is identical and print both medians.

    pip install duckdb
    python3 bench/federated_compare.py --tiermesh target/release/tiermesh --dir /tmp/tm-fed \
        [--households 3000000] [--runs 10] [--data GEN_DIR]

The mesh benchmark writes DIR/data (64 county folders of households.csv and persons.csv, unless
--data reuses a generated folder), DIR/nodes and DIR/tiermesh.json (medians, p90s, the as-of date
and the full answers). DuckDB (2 threads, tables loaded once, in-process) then loads the same
files with the typing of bench/duckdb_compare.py, whose macros give the project's derived
dimensions (province/prefecture/county/township by substr of region_code and zero padding,
age and age_band as of the benchmark's as-of date), so the very same SQL text runs on both.

The TierMesh latency is measured at the client, per query: signed request sent over QUIC to the
national node, fanned out through the tier tree, answer released. DuckDB's is one
`execute().fetchall()`. Both take the median of --runs runs after 2 warm-up runs. Answers are
compared as row sets (order-insensitive); numbers with a relative tolerance. Exit status 1 if
any answer differs.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import duckdb  # noqa: E402
import duckdb_compare  # noqa: E402

WARMUP_RUNS = 2
DUCKDB_THREADS = 2
RELATIVE_TOLERANCE = 1e-9


def number_of(value):
    """The value as a float when it is a number (or TierMesh's exact decimal text), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) or type(value).__name__ == "Decimal":
        return float(value)
    if isinstance(value, str) and "." in value:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def same_cell(ours, theirs):
    a, b = number_of(ours), number_of(theirs)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-9)
    if isinstance(ours, str) and not isinstance(theirs, str) and theirs is not None:
        return ours == str(theirs)
    return ours == theirs


def same_rows(ours, theirs):
    """Order-insensitive: both sides sorted by their normalised form (bench/duckdb_compare.py),
    then compared cell by cell on the raw values with `same_cell` (relative tolerance 1e-9).
    Comparing the normalised (9-digit rounded) cells instead would call two averages 1e-12 apart
    different when they round to different last digits (9212.364375... vs ...374999)."""
    if len(ours) != len(theirs):
        return False

    def in_order(rows):
        keyed = [(repr(duckdb_compare.rows_of([row], False)[0]), row) for row in rows]
        return [row for _, row in sorted(keyed, key=lambda pair: pair[0])]

    return all(
        len(a) == len(b) and all(same_cell(x, y) for x, y in zip(a, b))
        for a, b in zip(in_order(ours), in_order(theirs))
    )


def run_mesh(arguments, json_path):
    command = [arguments.tiermesh, "bench", "federated", "--dir", arguments.dir,
               "--json", json_path, "--runs", str(arguments.runs)]
    if arguments.households is not None:
        command += ["--households", str(arguments.households)]
    if arguments.data:
        command += ["--data", arguments.data]
    if arguments.audit_dir:
        command += ["--audit-dir", arguments.audit_dir]
    print("$", " ".join(command), flush=True)
    completed = subprocess.run(command)
    if completed.returncode != 0:
        sys.exit(f"tiermesh bench federated failed with exit status {completed.returncode}")
    with open(json_path, encoding="utf-8") as handle:
        return json.load(handle)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiermesh", default="target/release/tiermesh", help="the tiermesh binary")
    parser.add_argument("--dir", required=True, help="working folder of the mesh benchmark (kept)")
    parser.add_argument("--households", type=int, help="households in all (default: the bench's 3,000,000)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per query, after 2 warm-up runs")
    parser.add_argument("--data", help="reuse this generated data folder instead of generating")
    parser.add_argument("--audit-dir", help="a new folder for the nodes' audit logs (e.g. under /dev/shm: "
                        "without the one-disk fsync queue no deployment shares)")
    arguments = parser.parse_args()
    if arguments.runs < 1:
        sys.exit("--runs must be at least 1")
    os.makedirs(arguments.dir, exist_ok=True)
    json_path = os.path.join(arguments.dir, "tiermesh.json")

    mesh = run_mesh(arguments, json_path)

    connection = duckdb.connect()
    connection.execute(f"SET threads TO {DUCKDB_THREADS}")
    started = time.perf_counter()
    duckdb_compare.load(connection, mesh["data"], mesh["as_of"])
    loaded = time.perf_counter() - started
    households = connection.execute("SELECT COUNT(*) FROM households").fetchone()[0]
    persons = connection.execute("SELECT COUNT(*) FROM persons").fetchone()[0]
    print(f"\nduckdb: loaded {households} households + {persons} persons from {mesh['data']} in {loaded:.1f} s "
          f"({DUCKDB_THREADS} threads; as of {mesh['as_of']})")
    if (households, persons) != (mesh["households"], mesh["persons"]):
        print(f"warning: the mesh stored {mesh['households']} households + {mesh['persons']} persons")

    results = []
    for query in mesh["queries"]:
        times = []
        for run in range(WARMUP_RUNS + arguments.runs):
            started = time.perf_counter()
            rows = connection.execute(query["sql"]).fetchall()
            if run >= WARMUP_RUNS:
                times.append((time.perf_counter() - started) * 1e3)
        same = same_rows(query["rows"], rows)
        results.append((query, statistics.median(times), same, rows))

    header = f"{'query':<58} {'TierMesh ms':>11} {'DuckDB ms':>10} {'ratio':>6}  identical"
    print(f"\n{header}\n{'-' * len(header)}")
    for query, duck_ms, same, _ in results:
        label = f"{query['name']} {query['title']}"[:58]
        ratio = query["median_ms"] / duck_ms if duck_ms > 0 else float("inf")
        print(f"{label:<58} {query['median_ms']:>11.1f} {duck_ms:>10.1f} {ratio:>6.2f}  {'yes' if same else 'NO'}")
    print(f"\nTierMesh: {mesh['households']} households + {mesh['persons']} persons on 77 nodes, "
          f"median of {mesh['runs']} runs at the client (min cell {mesh['min_cell']}); "
          f"peak RSS {mesh['peak_resident_mib']:.0f} MiB. ratio = TierMesh / DuckDB (<= 1 meets the target).")

    different = [entry for entry in results if not entry[2]]
    for query, _, _, rows in different:
        print(f"\n{query['name']} differs:\n  sql:      {query['sql']}")
        print("  tiermesh:", duckdb_compare.rows_of(query["rows"], False)[:10])
        print("  duckdb:  ", duckdb_compare.rows_of(rows, False)[:10])
    print(f"\n{len(results) - len(different)} of {len(results)} answers identical")
    sys.exit(1 if different else 0)


if __name__ == "__main__":
    main()
