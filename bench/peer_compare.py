#!/usr/bin/env python3
"""The peer comparison in one run: ONE generated data set, loaded into a TierMesh loopback mesh
(`tiermesh bench federated`: 1 national, 4 provinces, 8 prefectures, 64 counties), into DuckDB
(in-process) and into PostgreSQL 15 with postgres_fdw (1 coordinator + 16 shard instances on
127.0.0.1); the six queries of the federated benchmark on all three, answers checked identical,
medians and ratios printed as a Markdown table.

    pip install duckdb 'psycopg[binary]'
    apt-get install postgresql-15          # binaries in /usr/lib/postgresql/15/bin (--pg-bin)
    python3 bench/peer_compare.py --tiermesh target/release/tiermesh --dir /tmp/peer \
        [--households 3000000] [--runs 10] [--data GEN_DIR] [--keep] [--json OUT]

Steps. (1) `tiermesh bench federated` (through bench/federated_compare.py) generates DIR/data
(64 county folders of households.csv and persons.csv; --data reuses a generated folder), builds
the 77-node mesh, times the six queries and writes DIR/tiermesh.json (medians, the as-of date and
the full answers). (2) DuckDB (2 threads) loads the same files with bench/duckdb_compare.py's
typing and macros and runs the very same SQL text. (3) PostgreSQL: 17 clusters are initdb'd under
DIR/pg (as the `postgres` user when run as root), each on its own port on 127.0.0.1 (unix sockets
in DIR/pg/sock). Rows are distributed by county: the 64 counties, sorted, 4 consecutive ones per
shard, loaded with COPY into local tables typed like DuckDB's, plus a stored generated column
`county_code` = the first 6 digits of household_id (= the county folder); then VACUUM ANALYZE.
The coordinator declares `households` and `persons` as tables PARTITION BY LIST (county_code)
whose 16 partitions are postgres_fdw foreign tables, one per shard server.

What is measured: each system's latency at the client, per query, median of --runs runs after 2
warm-up runs. TierMesh: signed request over QUIC to the national node, fan-out through the tier
tree, released answer (the bench's own figure). DuckDB: one `execute().fetchall()`. PostgreSQL:
one `execute()` + `fetchall()` of psycopg on one TCP connection to the coordinator, planning
included, the coordinator's fdw connections to the shards warm (made by the warm-up runs).

The PostgreSQL SQL (PG_QUERIES below) is the benchmark's SQL rewritten to built-in immutable
expressions (substr, || zero padding, the age band as a CASE over birth-date thresholds for the
benchmark's as-of date), which postgres_fdw may ship to the shards, and in two phases: an inner aggregate
grouped by the partition key `county_code` as well (a full partitionwise aggregate, which
postgres_fdw pushes to each shard as one remote GROUP BY: it cannot push the partial aggregates a
partitionwise aggregate over a GROUP BY without the key would need), and an outer re-aggregation
of the at most 16 x 4 x groups rows on the coordinator (COUNT -> SUM of counts, AVG -> SUM/SUM
of sums and counts, MAX -> MAX). Q4 joins USING (county_code, household_id): county_code is a
function of household_id, so the answer is the same as USING (household_id), and the partitionwise
join sends each shard its own join. EXPLAIN (VERBOSE) is checked once per query: pushed down =
every shard gets one remote query holding the GROUP BY (and for Q4 the JOIN).

Answers are compared as row sets, numbers with relative tolerance 1e-9 (bench/federated_compare.py):
TierMesh vs DuckDB, TierMesh vs PostgreSQL and DuckDB vs PostgreSQL. Exit status 1 if any
differs. Every postgres instance is stopped at the end (`pg_ctl stop -m immediate`, also on an
error or Ctrl-C); DIR/pg is removed unless --keep.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import duckdb  # noqa: E402
import duckdb_compare  # noqa: E402
import federated_compare  # noqa: E402

try:
    import psycopg  # noqa: E402
except ImportError:
    sys.exit("psycopg is needed: pip install 'psycopg[binary]'")

SHARDS = 16
COUNTIES = 64
PG_BIN_DEFAULT = "/usr/lib/postgresql/15/bin"
PG_PORT_DEFAULT = 25432
PG_USER = "postgres"
LOAD_THREADS = 2
COPY_CHUNK_BYTES = 1 << 20

# DuckDB's typing (bench/duckdb_compare.py) in PostgreSQL's names.
PG_TYPE_OF = {"VARCHAR": "text", "INTEGER": "integer", "DECIMAL(12,2)": "numeric(12,2)",
              "BOOLEAN": "boolean", "DATE": "date"}
TABLE_TYPES = {"households": duckdb_compare.HOUSEHOLD_TYPES, "persons": duckdb_compare.PERSON_TYPES}
COUNTY_KEY = "county_code text GENERATED ALWAYS AS (substr(household_id, 1, 6)) STORED"

# Settings of every instance. 17 instances share 2 cores and 24 GiB: 256 MB of shared buffers per
# shard holds its whole share of the 3,000,000-household data set (about 100 MB of heap), 4.3 GB in
# all. No parallel workers: a query already runs on all 16 shards at once (async append), which
# keeps both cores busy; workers would only add start-up cost. JIT off: every shard's part takes
# tens of milliseconds, about what compiling the expressions costs, and the planner's JIT cost
# thresholds would switch it on for the persons scans. Durability off (a benchmark).
PG_COMMON_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "20",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "'4GB'",
    "checkpoint_timeout": "'1h'",
    "work_mem": "'64MB'",
    "maintenance_work_mem": "'256MB'",
    "max_parallel_workers_per_gather": "0",
    "max_parallel_maintenance_workers": "0",
    "jit": "off",
    "autovacuum": "off",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "0",
}
PG_SHARD_SETTINGS = {"shared_buffers": "'256MB'", "effective_cache_size": "'1GB'"}
PG_COORDINATOR_SETTINGS = {
    "shared_buffers": "'128MB'",
    "effective_cache_size": "'1GB'",
    "enable_partitionwise_aggregate": "on",
    "enable_partitionwise_join": "on",
    "enable_async_append": "on",
    # Without remote estimates postgres_fdw costs a join it would ship as a nested loop over the
    # cross product of both sides' rows, times cpu_operator_cost per join clause: at 3,000,000
    # households that makes Q4's shipped join look ~100 times dearer than fetching both sides and
    # hash-joining on the coordinator. The coordinator evaluates next to nothing itself (it
    # appends and re-aggregates a few hundred rows), so its operator cost is set near zero.
    "cpu_operator_cost": "0.000001",
}
# postgres_fdw server options. use_remote_estimate off: on, planning costs remote EXPLAINs per shard
# and path, one after the other (about 100 ms a query with 16 shards, against about 5 ms), and
# Q4's aggregate still stayed on the coordinator; the coordinator has local statistics instead
# (ANALYZE of the foreign tables after the load). fdw_tuple_cost 0.2 (PostgreSQL 17's default;
# 15's 0.01 makes shipping every row look nearly free, and the planner then aggregated Q5 on the
# coordinator).
FDW_SERVER_OPTIONS = {"async_capable": "true", "fetch_size": "100000", "use_remote_estimate": "false",
                      "fdw_tuple_cost": "0.2"}

# TierMesh's derived dimensions as built-in immutable expressions (postgres_fdw ships those).
PROVINCE = "substr(region_code, 1, 2) || '0000000000'"
COUNTY = "substr(region_code, 1, 6) || '000000'"
TOWNSHIP = "substr(region_code, 1, 9) || '000'"
# age_band(birth_date, 10) as a CASE over birth-date thresholds computed here for the as-of date,
# the way TierMesh's AgeTable does it: someone is at least A years old when born on or before the
# as-of date A years earlier (28 February when that day is 29 February of a common year, so those
# born on 29 February turn a year older on 1 March in common years). Date comparisons with
# constants ship to the shards; EXTRACT/date_part do not (postgres_fdw 15 refuses their text
# argument 'year', whose collation does not come from a foreign column).
AGE_BAND_MAX = 200


def age_threshold(as_of, years):
    try:
        return as_of.replace(year=as_of.year - years)
    except ValueError:
        return as_of.replace(year=as_of.year - years, day=as_of.day - 1)


def age_band_sql(as_of_text, width, column="birth_date"):
    """CASE giving (age // width) * width for ages 0 .. AGE_BAND_MAX - 1 (NULL beyond; an age below
    0, a birth after the as-of date, counts as band 0)."""
    as_of = datetime.date.fromisoformat(as_of_text)
    arms = " ".join(f"WHEN {column} > DATE '{age_threshold(as_of, band + width).isoformat()}' THEN {band}"
                    for band in range(0, AGE_BAND_MAX, width))
    return f"CASE {arms} END"


# The six queries for the coordinator: an inner aggregate per county (pushed to the shards), an
# outer one over its rows. `{prefecture}` and `{age_band_10}` (age_band_sql) are filled in at run time.
PG_QUERIES = {
    "Q1": "SELECT cause, SUM(n)::bigint, SUM(m)::bigint FROM ("
          "SELECT county_code, cause, COUNT(*) AS n, SUM(members) AS m FROM households "
          "WHERE status IN ('poor','returned','monitored') GROUP BY county_code, cause"
          ") shard GROUP BY cause",
    "Q2": "SELECT province, status, SUM(s) / NULLIF(SUM(c), 0), MAX(mx) FROM ("
          f"SELECT county_code, {PROVINCE} AS province, status, SUM(income_per_capita) AS s, "
          "COUNT(income_per_capita) AS c, MAX(income_per_capita) AS mx FROM households "
          f"GROUP BY county_code, {PROVINCE}, status"
          ") shard GROUP BY province, status",
    "Q3": "SELECT gender, age_band, SUM(n)::bigint FROM ("
          "SELECT county_code, gender, {age_band_10} AS age_band, COUNT(*) AS n FROM persons "
          "GROUP BY county_code, gender, age_band"
          ") shard GROUP BY gender, age_band",
    "Q4": "SELECT county, SUM(n)::bigint FROM ("
          f"SELECT county_code, {COUNTY} AS county, COUNT(*) AS n "
          "FROM persons JOIN households USING (county_code, household_id) "
          "WHERE labor = 'full' AND employed = false AND relocated = true "
          f"GROUP BY county_code, {COUNTY}"
          ") shard GROUP BY county",
    "Q5": "SELECT county, SUM(n)::bigint FROM ("
          f"SELECT county_code, {COUNTY} AS county, COUNT(*) AS n FROM households "
          "WHERE status = 'exited' AND income_per_capita < 4000 "
          f"GROUP BY county_code, {COUNTY}"
          ") shard GROUP BY county",
    "Q6": "SELECT township, SUM(n)::bigint, SUM(s) / NULLIF(SUM(c), 0) FROM ("
          f"SELECT county_code, {TOWNSHIP} AS township, COUNT(*) AS n, SUM(income_per_capita) AS s, "
          "COUNT(income_per_capita) AS c FROM households "
          "WHERE region_code LIKE '{prefecture}%' "
          f"GROUP BY county_code, {TOWNSHIP}"
          ") shard GROUP BY township",
}


def measure(run, runs):
    """Median of `runs` timed calls (ms) after the warm-up calls, and the last answer."""
    times = []
    rows = None
    for number in range(federated_compare.WARMUP_RUNS + runs):
        started = time.perf_counter()
        rows = run()
        if number >= federated_compare.WARMUP_RUNS:
            times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times), rows


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PostgresMesh:
    """1 coordinator + 16 shard clusters under ROOT, started by us and stopped by `stop`."""

    def __init__(self, root, bin_dir, first_port):
        self.root = root
        self.bin_dir = bin_dir
        self.sockets = os.path.join(root, "sock")
        self.names = ["coordinator"] + [f"shard{i:02d}" for i in range(SHARDS)]
        self.ports = {name: first_port + number for number, name in enumerate(self.names)}
        self.started = []
        self.as_user = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", PG_USER, "--"]

    def run(self, *command):
        completed = subprocess.run(self.as_user + list(command), capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stdout}{completed.stderr}")
        return completed.stdout

    def data_dir(self, name):
        return os.path.join(self.root, name)

    def create(self):
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not os.access(os.path.join(self.bin_dir, tool), os.X_OK):
                sys.exit(f"no {tool} in {self.bin_dir}: apt-get install postgresql-15 (or --pg-bin)")
        if os.path.exists(self.root):
            for name in self.names:
                if os.path.exists(os.path.join(self.data_dir(name), "postmaster.pid")):
                    sys.exit(f"{self.data_dir(name)} has a postmaster.pid: stop that instance first "
                             f"({self.bin_dir}/pg_ctl stop -D {self.data_dir(name)})")
            shutil.rmtree(self.root)
        busy = [port for port in self.ports.values() if not port_is_free(port)]
        if busy:
            sys.exit(f"ports {busy} are in use: choose another --pg-port")
        os.makedirs(self.sockets)
        if self.as_user:
            import pwd
            try:
                user = pwd.getpwnam(PG_USER)
            except KeyError:
                sys.exit(f"no user {PG_USER!r} (apt-get install postgresql-15 creates it; or useradd {PG_USER})")
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        started = time.perf_counter()
        initdbs = [
            subprocess.Popen(self.as_user + [os.path.join(self.bin_dir, "initdb"), "-D", self.data_dir(name),
                                             "-U", PG_USER, "--auth=trust", "--encoding=UTF8", "--locale=C",
                                             "--no-sync"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for name in self.names
        ]
        for name, process in zip(self.names, initdbs):
            _, errors = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"initdb of {name} failed: {errors}")
        for name in self.names:
            settings = dict(PG_COMMON_SETTINGS)
            settings.update(PG_COORDINATOR_SETTINGS if name == "coordinator" else PG_SHARD_SETTINGS)
            settings["port"] = str(self.ports[name])
            settings["unix_socket_directories"] = f"'{self.sockets}'"
            text = "\n# bench/peer_compare.py\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())
            completed = subprocess.run(self.as_user + ["tee", "-a", os.path.join(self.data_dir(name), "postgresql.conf")],
                                       input=text, capture_output=True, text=True)
            if completed.returncode != 0:
                raise RuntimeError(f"writing the settings of {name}: {completed.stderr}")
        for name in self.names:
            self.started.append(name)
            self.run(os.path.join(self.bin_dir, "pg_ctl"), "start", "-w", "-D", self.data_dir(name),
                     "-l", os.path.join(self.root, f"{name}.log"))
        print(f"postgres: {len(self.names)} clusters initdb'd and started under {self.root} in "
              f"{time.perf_counter() - started:.1f} s (ports {self.ports['coordinator']}-"
              f"{self.ports[self.names[-1]]} on 127.0.0.1)", flush=True)

    def connect(self, name, **options):
        return psycopg.connect(host="127.0.0.1", port=self.ports[name], user=PG_USER, dbname="postgres",
                               autocommit=True, **options)

    def stop(self):
        for name in reversed(self.started):
            subprocess.run(self.as_user + [os.path.join(self.bin_dir, "pg_ctl"), "stop", "-m", "immediate",
                                           "-D", self.data_dir(name)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started = []


def create_table_sql(table, foreign=False):
    columns = [f"{name} {PG_TYPE_OF[kind]}" for name, kind in TABLE_TYPES[table].items()]
    columns.append("county_code text" if foreign else COUNTY_KEY)
    return f"({', '.join(columns)})"


def county_shards(data):
    """The 64 county folders, sorted, 4 consecutive ones per shard."""
    counties = sorted(name for name in os.listdir(data)
                      if re.fullmatch(r"\d{6}", name) and os.path.isdir(os.path.join(data, name)))
    if len(counties) != COUNTIES:
        sys.exit(f"{data}: {len(counties)} county folders, expected {COUNTIES}")
    per_shard = COUNTIES // SHARDS
    return [counties[i * per_shard:(i + 1) * per_shard] for i in range(SHARDS)]


def load_shard(mesh, name, data, counties):
    """One transaction: CREATE TABLE and COPY (wal_level=minimal writes no WAL for them)."""
    with mesh.connect(name) as connection:
        with connection.transaction():
            for table, types in TABLE_TYPES.items():
                connection.execute(f"CREATE TABLE {table} {create_table_sql(table)}")
                columns = ", ".join(types)
                for county in counties:
                    path = os.path.join(data, county, f"{table}.csv")
                    with open(path, "rb") as source, connection.cursor() as cursor:
                        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                            while chunk := source.read(COPY_CHUNK_BYTES):
                                copy.write(chunk)
        # Q6 filters region_code by prefix; with the C collation a plain btree index serves LIKE.
        connection.execute("CREATE INDEX households_region_code ON households (region_code)")
        connection.execute("VACUUM (ANALYZE) households")
        connection.execute("VACUUM (ANALYZE) persons")
        counts = [connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in TABLE_TYPES]
        counts.append(connection.execute(
            "SELECT pg_total_relation_size('households') + pg_total_relation_size('persons')").fetchone()[0])
        wrong = connection.execute(
            "SELECT COUNT(*) FROM persons WHERE county_code <> ALL (%s)", (counties,)).fetchone()[0]
        wrong += connection.execute(
            "SELECT COUNT(*) FROM households WHERE county_code <> ALL (%s) OR substr(region_code, 1, 6) <> county_code",
            (counties,)).fetchone()[0]
        if wrong:
            raise RuntimeError(f"{name}: {wrong} rows whose household_id is not of the shard's counties")
        return counts


def load_postgres(mesh, data):
    shards = county_shards(data)
    started = time.perf_counter()
    counts = {}
    errors = []
    work = list(enumerate(shards))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not work or errors:
                    return
                number, counties = work.pop(0)
            try:
                counts[number] = load_shard(mesh, f"shard{number:02d}", data, counties)
            except Exception as error:  # noqa: BLE001 (reported below)
                with lock:
                    errors.append(error)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    loaded = time.perf_counter() - started

    with mesh.connect("coordinator") as connection:
        connection.execute("CREATE EXTENSION postgres_fdw")
        for table in TABLE_TYPES:
            connection.execute(f"CREATE TABLE {table} {create_table_sql(table, foreign=True)} "
                               "PARTITION BY LIST (county_code)")
        for number, counties in enumerate(shards):
            server = f"shard{number:02d}"
            options = dict(FDW_SERVER_OPTIONS, host="127.0.0.1", port=str(mesh.ports[server]), dbname="postgres")
            listing = ", ".join(f"{key} '{value}'" for key, value in options.items())
            connection.execute(f"CREATE SERVER {server} FOREIGN DATA WRAPPER postgres_fdw OPTIONS ({listing})")
            connection.execute(f"CREATE USER MAPPING FOR {PG_USER} SERVER {server} OPTIONS (user '{PG_USER}')")
            values = ", ".join(f"'{county}'" for county in counties)
            for table in TABLE_TYPES:
                connection.execute(f"CREATE FOREIGN TABLE {table}_{server} PARTITION OF {table} "
                                   f"FOR VALUES IN ({values}) SERVER {server} "
                                   f"OPTIONS (schema_name 'public', table_name '{table}')")
        analyze_started = time.perf_counter()
        for table in TABLE_TYPES:
            connection.execute(f"ANALYZE {table}")
        analyzed = time.perf_counter() - analyze_started
    households = sum(count[0] for count in counts.values())
    persons = sum(count[1] for count in counts.values())
    largest = max(count[2] for count in counts.values()) / 2**20
    print(f"postgres: loaded {households} households + {persons} persons into {SHARDS} shards "
          f"(4 counties each; largest shard {largest:.0f} MiB of tables and index) with COPY + VACUUM "
          f"ANALYZE in {loaded:.1f} s; coordinator ANALYZE of the "
          f"foreign partitions {analyzed:.1f} s", flush=True)
    return households, persons


def pushdown_of(connection, sql):
    """From EXPLAIN (VERBOSE): does every shard get one remote query with the aggregate (and join)?"""
    plan = [row[0] for row in connection.execute(f"EXPLAIN (VERBOSE) {sql}").fetchall()]
    remote = [line.split("Remote SQL:", 1)[1].strip() for line in plan if "Remote SQL:" in line]
    scans = sum(1 for line in plan if "Foreign Scan" in line)
    asynchronous = sum(1 for line in plan if "Async Foreign Scan" in line)
    grouped = [text for text in remote if " GROUP BY " in text]
    joined = [text for text in grouped if " JOIN " in text]
    wanted_join = " JOIN " in sql
    pushed = bool(remote) and len(grouped) == len(remote) == scans and (not wanted_join or len(joined) == len(grouped))
    return {
        "pushed_down": pushed,
        "remote_queries": len(remote),
        "async_scans": asynchronous,
        "example_remote_sql": remote[0] if remote else None,
        "plan": plan,
    }


def run_postgres(arguments, mesh_document, prefecture):
    root = os.path.join(os.path.abspath(arguments.dir), "pg")
    mesh = PostgresMesh(root, arguments.pg_bin, arguments.pg_port)
    results = {}
    try:
        mesh.create()
        households, persons = load_postgres(mesh, mesh_document["data"])
        if (households, persons) != (mesh_document["households"], mesh_document["persons"]):
            print(f"warning: the mesh stored {mesh_document['households']} households + "
                  f"{mesh_document['persons']} persons")
        age_band_10 = age_band_sql(mesh_document["as_of"], 10)
        with mesh.connect("coordinator") as connection:
            print()
            for query in mesh_document["queries"]:
                sql = PG_QUERIES[query["name"]].replace("{prefecture}", prefecture) \
                                               .replace("{age_band_10}", age_band_10)
                explained = pushdown_of(connection, sql)
                print(f"postgres {query['name']}: pushed down {'yes' if explained['pushed_down'] else 'NO'} "
                      f"({explained['remote_queries']} remote queries, {explained['async_scans']} async)", flush=True)
                if not explained["pushed_down"]:
                    print("  " + "\n  ".join(explained["plan"]))
                median_ms, rows = measure(lambda: connection.execute(sql).fetchall(), arguments.runs)
                results[query["name"]] = {"sql": sql, "median_ms": median_ms, "rows": rows, **explained}
    finally:
        mesh.stop()
        if not arguments.keep and os.path.exists(root):
            shutil.rmtree(root, ignore_errors=True)
    if arguments.keep:
        print(f"postgres: clusters kept (stopped) in {root}; start one with "
              f"{'runuser -u postgres -- ' if mesh.as_user else ''}{arguments.pg_bin}/pg_ctl start -D {root}/<name> -l {root}/<name>.log")
    return results


def run_duckdb(mesh_document, runs):
    connection = duckdb.connect()
    connection.execute(f"SET threads TO {federated_compare.DUCKDB_THREADS}")
    started = time.perf_counter()
    duckdb_compare.load(connection, mesh_document["data"], mesh_document["as_of"])
    households = connection.execute("SELECT COUNT(*) FROM households").fetchone()[0]
    persons = connection.execute("SELECT COUNT(*) FROM persons").fetchone()[0]
    print(f"\nduckdb: loaded {households} households + {persons} persons in {time.perf_counter() - started:.1f} s "
          f"({federated_compare.DUCKDB_THREADS} threads)", flush=True)
    results = {}
    for query in mesh_document["queries"]:
        median_ms, rows = measure(lambda: connection.execute(query["sql"]).fetchall(), runs)
        results[query["name"]] = {"median_ms": median_ms, "rows": rows}
    connection.close()
    return results


def ratio(a, b):
    return a / b if b > 0 else float("inf")


def plain(value):
    """JSON-able form of an answer cell."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiermesh", default="target/release/tiermesh", help="the tiermesh binary")
    parser.add_argument("--dir", required=True, help="working folder: DIR/data, DIR/nodes, DIR/tiermesh.json, DIR/pg")
    parser.add_argument("--households", type=int, default=3_000_000, help="households in all (default 3,000,000)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per query, after 2 warm-up runs")
    parser.add_argument("--data", help="reuse this generated data folder instead of generating")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL clusters (stopped) in DIR/pg")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--pg-bin", default=PG_BIN_DEFAULT, help=f"PostgreSQL 15 binaries (default {PG_BIN_DEFAULT})")
    parser.add_argument("--pg-port", type=int, default=PG_PORT_DEFAULT,
                        help=f"coordinator port; the shards take the next 16 (default {PG_PORT_DEFAULT})")
    parser.add_argument("--audit-dir", help="passed to `tiermesh bench federated --audit-dir`")
    arguments = parser.parse_args()
    if arguments.runs < 1:
        sys.exit("--runs must be at least 1")
    if not os.access(os.path.join(arguments.pg_bin, "initdb"), os.X_OK):
        sys.exit(f"no PostgreSQL in {arguments.pg_bin}: apt-get install postgresql-15")
    # SIGTERM as Ctrl-C, so that the finally clauses stop the postgres instances.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    os.makedirs(arguments.dir, exist_ok=True)

    mesh_document = federated_compare.run_mesh(arguments, os.path.join(arguments.dir, "tiermesh.json"))
    q6 = next(query for query in mesh_document["queries"] if query["name"] == "Q6")
    prefecture = re.search(r"LIKE '(\d+)%'", q6["sql"]).group(1)
    duck = run_duckdb(mesh_document, arguments.runs)
    postgres = run_postgres(arguments, mesh_document, prefecture)

    lines = ["| query | TierMesh ms | DuckDB ms | PostgreSQL+fdw ms | TierMesh/DuckDB | TierMesh/PG |",
             "|---|---:|---:|---:|---:|---:|"]
    differences = []
    report = []
    for query in mesh_document["queries"]:
        name = query["name"]
        ours, duck_result, pg_result = query["rows"], duck[name], postgres[name]
        checks = {
            "tiermesh_duckdb": federated_compare.same_rows(ours, duck_result["rows"]),
            "tiermesh_postgres": federated_compare.same_rows(ours, pg_result["rows"]),
            "duckdb_postgres": federated_compare.same_rows(duck_result["rows"], pg_result["rows"]),
        }
        if not all(checks.values()):
            differences.append((query, duck_result, pg_result, checks))
        tm_ms, duck_ms, pg_ms = query["median_ms"], duck_result["median_ms"], pg_result["median_ms"]
        lines.append(f"| {name} {query['title']} | {tm_ms:.1f} | {duck_ms:.1f} | {pg_ms:.1f} | "
                     f"{ratio(tm_ms, duck_ms):.2f} | {ratio(tm_ms, pg_ms):.2f} |")
        report.append({
            "name": name, "title": query["title"], "sql": query["sql"], "postgres_sql": pg_result["sql"],
            "tiermesh_ms": tm_ms, "duckdb_ms": duck_ms, "postgres_ms": pg_ms,
            "tiermesh_over_duckdb": ratio(tm_ms, duck_ms), "tiermesh_over_postgres": ratio(tm_ms, pg_ms),
            "identical": checks, "postgres_pushed_down": pg_result["pushed_down"],
            "postgres_remote_queries": pg_result["remote_queries"], "postgres_async_scans": pg_result["async_scans"],
            "postgres_plan": pg_result["plan"], "rows": len(ours),
            "postgres_rows": [[plain(cell) for cell in row] for row in pg_result["rows"]],
        })

    print("\n" + "\n".join(lines))
    print(f"\n{mesh_document['households']} households + {mesh_document['persons']} persons, as of "
          f"{mesh_document['as_of']}; medians of {arguments.runs} runs after {federated_compare.WARMUP_RUNS} "
          "warm-up runs, at the client. TierMesh: 77-node loopback mesh; DuckDB: in-process, "
          f"{federated_compare.DUCKDB_THREADS} threads; PostgreSQL 15: coordinator + {SHARDS} postgres_fdw "
          "shards, partitionwise aggregate/join, async append. Ratio < 1: TierMesh faster.")
    pushed = sum(1 for entry in report if entry["postgres_pushed_down"])
    print(f"postgres pushdown: {pushed} of {len(report)} queries aggregated on the shards")
    for query, duck_result, pg_result, checks in differences:
        print(f"\n{query['name']} differs ({', '.join(key for key, same in checks.items() if not same)}):")
        print(f"  sql:      {query['sql']}\n  pg sql:   {pg_result['sql']}")
        print("  tiermesh:", duckdb_compare.rows_of(query["rows"], False)[:10])
        print("  duckdb:  ", duckdb_compare.rows_of(duck_result["rows"], False)[:10])
        print("  postgres:", duckdb_compare.rows_of(pg_result["rows"], False)[:10])
    print(f"\n{len(report) - len(differences)} of {len(report)} answers identical across TierMesh, DuckDB and PostgreSQL")

    if arguments.json:
        document = {
            "as_of": mesh_document["as_of"], "data": mesh_document["data"],
            "households": mesh_document["households"], "persons": mesh_document["persons"],
            "runs": arguments.runs, "warmup_runs": federated_compare.WARMUP_RUNS,
            "duckdb_threads": federated_compare.DUCKDB_THREADS,
            "postgres": {
                "shards": SHARDS, "common_settings": PG_COMMON_SETTINGS, "shard_settings": PG_SHARD_SETTINGS,
                "coordinator_settings": PG_COORDINATOR_SETTINGS, "fdw_server_options": FDW_SERVER_OPTIONS,
            },
            "tiermesh_peak_resident_mib": mesh_document.get("peak_resident_mib"),
            "table_markdown": "\n".join(lines),
            "queries": report,
        }
        with open(arguments.json, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
        print(f"results written to {arguments.json}")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted (every postgres instance started was stopped)")
