#!/usr/bin/env python3
"""Run the same aggregate SQL on a TierMesh node and on DuckDB over the same CSV files, check the
answers are identical, and print both medians.

    pip install duckdb
    python3 bench/duckdb_compare.py --tiermesh target/release/tiermesh --node NODE_DIR \
        --data GEN_DIR --as-of 2026-06-30 [--runs 5] [--queries FILE]

GEN_DIR is what `tiermesh gen` wrote (GEN_DIR/<county>/{households,persons}.csv); NODE_DIR a node
that imported exactly those files. The TierMesh figure is the engine's own query time reported by
`tiermesh query --format json` (`elapsed_ms`), excluding process start and image rebuild, which
DuckDB (in-process, tables loaded once) does not pay either.
"""

import argparse
import glob
import json
import math
import os
import statistics
import subprocess
import sys
import time

import duckdb

DEFAULT_QUERIES = [
    "SELECT cause, COUNT(*), SUM(members) FROM households WHERE status IN ('poor','returned','monitored') GROUP BY cause",
    "SELECT county(region_code), status, AVG(income_per_capita), MAX(income_per_capita) FROM households GROUP BY county(region_code), status",
    "SELECT gender, age_band(birth_date, 10), COUNT(*) FROM persons GROUP BY gender, age_band(birth_date, 10)",
    "SELECT county(region_code), COUNT(*) FROM persons JOIN households USING (household_id) WHERE labor = 'full' AND employed = false AND relocated = true GROUP BY county(region_code)",
    "SELECT county(region_code), COUNT(*) FROM households WHERE status = 'exited' AND income_per_capita < 4000 GROUP BY county(region_code)",
    "SELECT township(region_code), COUNT(*), AVG(income_per_capita) FROM households WHERE region_code LIKE '520102%' GROUP BY township(region_code)",
    "SELECT status, MIN(income_per_capita), SUM(income_per_capita), COUNT(exit_year) FROM households GROUP BY status",
    "SELECT education, health, COUNT(*) FROM persons WHERE age(birth_date) BETWEEN 16 AND 59 AND NOT employed GROUP BY education, health",
    "SELECT prefecture(region_code), industry, COUNT(*) FROM households WHERE relocated OR cause IN ('land','water') GROUP BY prefecture(region_code), industry HAVING COUNT(*) > 10",
    "SELECT substr(cadre_id, 1, 5), COUNT(*) FROM households WHERE relocation_site IS NOT NULL GROUP BY substr(cadre_id, 1, 5)",
    "SELECT COUNT(*), AVG(members), MIN(registered_year), MAX(exit_year) FROM households WHERE income_per_capita BETWEEN 3000 AND 8000.5",
    "SELECT relation, gender, COUNT(*) FROM persons JOIN households USING (household_id) WHERE status <> 'exited' AND in_school = true GROUP BY relation, gender ORDER BY COUNT(*) DESC LIMIT 5",
]

HOUSEHOLD_TYPES = {
    "household_id": "VARCHAR", "region_code": "VARCHAR", "head_id": "VARCHAR", "head_name": "VARCHAR",
    "members": "INTEGER", "cause": "VARCHAR", "status": "VARCHAR", "registered_year": "INTEGER",
    "exit_year": "INTEGER", "income_per_capita": "DECIMAL(12,2)", "housing_safe": "BOOLEAN",
    "water_safe": "BOOLEAN", "medical_insured": "BOOLEAN", "cadre_id": "VARCHAR", "industry": "VARCHAR",
    "relocated": "BOOLEAN", "relocation_site": "VARCHAR", "phone": "VARCHAR",
}
PERSON_TYPES = {
    "person_id": "VARCHAR", "household_id": "VARCHAR", "relation": "VARCHAR", "gender": "VARCHAR",
    "birth_date": "DATE", "education": "VARCHAR", "health": "VARCHAR", "labor": "VARCHAR",
    "in_school": "BOOLEAN", "employed": "BOOLEAN",
}


def load(connection, data, as_of):
    for table, types in (("households", HOUSEHOLD_TYPES), ("persons", PERSON_TYPES)):
        files = sorted(glob.glob(os.path.join(data, "*", f"{table}.csv")))
        if not files:
            sys.exit(f"no {table}.csv under {data}")
        columns = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in types.items()) + "}"
        listing = "[" + ", ".join(f"'{name}'" for name in files) + "]"
        connection.execute(
            f"CREATE TABLE {table} AS SELECT * FROM read_csv({listing}, header=true, columns={columns})"
        )
    # TierMesh's derived dimensions as DuckDB macros, so the very same SQL text runs in both.
    connection.execute("CREATE MACRO province(r) AS substr(r, 1, 2) || '0000000000'")
    connection.execute("CREATE MACRO prefecture(r) AS substr(r, 1, 4) || '00000000'")
    connection.execute("CREATE MACRO county(r) AS substr(r, 1, 6) || '000000'")
    connection.execute("CREATE MACRO township(r) AS substr(r, 1, 9) || '000'")
    connection.execute(f"CREATE MACRO age(b) AS date_sub('year', b, DATE '{as_of}')")
    connection.execute("CREATE MACRO age_band(b, w) AS (age(b) // w) * w")


def normal(value):
    """A comparable form: numbers as floats rounded to 9 significant digits."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) or type(value).__name__ == "Decimal":
        number = float(value)
        if number == 0:
            return 0.0
        return round(number, 8 - int(math.floor(math.log10(abs(number)))))
    if isinstance(value, str):
        try:
            return normal(float(value)) if value.strip() and value.lstrip("-").replace(".", "", 1).isdigit() and "." in value else value
        except ValueError:
            return value
    return str(value)


def rows_of(rows, ordered):
    out = [tuple(normal(cell) for cell in row) for row in rows]
    return out if ordered else sorted(out, key=repr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiermesh", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--as-of", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--queries", help="file with one query per line")
    arguments = parser.parse_args()
    queries = DEFAULT_QUERIES
    if arguments.queries:
        with open(arguments.queries, encoding="utf-8") as handle:
            queries = [line.strip() for line in handle if line.strip() and not line.startswith("#")]

    connection = duckdb.connect()
    started = time.perf_counter()
    load(connection, arguments.data, arguments.as_of)
    print(f"duckdb load: {time.perf_counter() - started:.1f} s")

    failures = 0
    print(f"{'query':<6} {'rows':>6} {'tiermesh ms':>12} {'duckdb ms':>10}  answer")
    for number, sql in enumerate(queries, 1):
        duck_times = []
        for _ in range(arguments.runs):
            started = time.perf_counter()
            duck_rows = connection.execute(sql).fetchall()
            duck_times.append((time.perf_counter() - started) * 1e3)
        output = subprocess.run(
            [arguments.tiermesh, "query", "--dir", arguments.node, "--format", "json",
             "--as-of", arguments.as_of, "--runs", str(arguments.runs), sql],
            capture_output=True, text=True,
        )
        if output.returncode != 0:
            print(f"Q{number}: tiermesh failed: {output.stderr.strip()}")
            failures += 1
            continue
        document = json.loads(output.stdout)
        ordered = "ORDER BY" in sql.upper()
        same = rows_of(document["rows"], ordered) == rows_of(duck_rows, ordered)
        failures += 0 if same else 1
        print(f"Q{number:<5} {len(duck_rows):>6} {document.get('elapsed_ms', float('nan')):>12.2f} "
              f"{statistics.median(duck_times):>10.2f}  {'identical' if same else 'DIFFERENT'}")
        if not same:
            print("  sql:     ", sql)
            print("  tiermesh:", rows_of(document["rows"], ordered)[:10])
            print("  duckdb:  ", rows_of(duck_rows, ordered)[:10])
    print(f"{len(queries) - failures} identical, {failures} different")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
