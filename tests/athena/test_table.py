"""The Glue table of template.yaml against the keys the shipper really wrote.

- `Table`: the table's shape (text lines, gzip, the three projected partitions) and its
  condition (CreateAthenaTable).
- `ProjectionRules`: the projection model itself, on made-up keys, right and wrong.
- `WrittenKeys`: every key the shipper wrote in the last end-to-end run (target/local-stack/,
  recorded by the gateway) is an object in a partition the table projects, and that partition's
  projected location is the key's own prefix. Fails when no run left any: run the end-to-end
  tests first (`make test` does).
- `DuckDB`: the objects the end-to-end scenario saved (`archive/<key>` in its stack's directory)
  read back as gzip text lines through a hive-partitioned glob, like Athena's TextInputFormat:
  as many rows as the objects have lines, partition by partition.
"""

import datetime
import gzip
import unittest

import projection as pj

BUCKET, PREFIX = "rds-log-archive", "logs"


class Table(unittest.TestCase):
    def test_condition(self):
        resource = pj.translated()["Resources"][pj.TABLE]
        self.assertEqual(resource.get("Condition"), "AthenaTable")
        database = pj.translated()["Resources"]["RdsLogDatabase"]
        self.assertEqual(database.get("Condition"), "AthenaTable")
        self.assertTrue(pj.resolver(BUCKET, PREFIX, "true").condition("AthenaTable"))
        self.assertFalse(pj.resolver(BUCKET, PREFIX, "false").condition("AthenaTable"))
        self.assertEqual(pj.translated()["Parameters"]["CreateAthenaTable"]["Default"], "false")

    def test_shape(self):
        t = pj.table(BUCKET, PREFIX)
        self.assertEqual(t["TableType"], "EXTERNAL_TABLE")
        self.assertEqual(
            t["Parameters"]["storage.location.template"],
            f"s3://{BUCKET}/{PREFIX}/instance=${{instance}}/log_type=${{log_type}}/date=${{date}}/",
        )
        self.assertEqual([k["Name"] for k in t["PartitionKeys"]], ["instance", "log_type", "date"])
        sd = t["StorageDescriptor"]
        self.assertEqual([(c["Name"], c["Type"]) for c in sd["Columns"]], [("line", "string")])
        self.assertEqual(sd["Location"], f"s3://{BUCKET}/{PREFIX}/")
        self.assertEqual(sd["InputFormat"], "org.apache.hadoop.mapred.TextInputFormat")
        self.assertEqual(sd["OutputFormat"], "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat")
        self.assertEqual(sd["SerdeInfo"]["SerializationLibrary"], "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe")
        p = pj.Projection(t)
        self.assertEqual([p.kind(c) for c in p.columns], ["injected", "enum", "date"])
        self.assertIn("must filter", t["Description"])
        self.assertTrue(all(isinstance(v, str) for v in t["Parameters"].values()), "Glue parameters are strings")


class ProjectionRules(unittest.TestCase):
    def setUp(self):
        now = datetime.datetime(2026, 12, 2, 5, 0)
        self.p = pj.Projection(pj.table(BUCKET, PREFIX), now=now)
        self.base = f"s3://{BUCKET}/{PREFIX}"

    def test_a_chunk_key_is_in_its_partition(self):
        url = f"{self.base}/instance=pg-main/log_type=error/date=2026-12-02/postgresql.log.2026-11-22-00/g0000-00000000000000000000.log.gz"
        values, why = self.p.partition(url)
        self.assertIsNone(why)
        self.assertEqual(values, {"instance": "pg-main", "log_type": "error", "date": "2026-12-02"})
        self.assertTrue(url.startswith(self.p.location(values)))

    def test_keys_outside_the_projection(self):
        cases = {
            "log_type=binlog/date=2026-12-02/f/g0.log.gz": "not in the enum",
            "log_type=error/date=2026-12-03/f/g0.log.gz": "outside the range",
            "log_type=error/date=2023-12-31/f/g0.log.gz": "outside the range",
            "log_type=error/date=2026-1-02/f/g0.log.gz": "not written as the format",
            "log_type=error/date=20261202/f/g0.log.gz": "not in the format",
            "log_type=error/f/g0.log.gz": "location template",
            "log_type=error/date=2026-12-02/": "not an object",
        }
        for rest, why in cases.items():
            values, got = self.p.partition(f"{self.base}/instance=db/{rest}")
            self.assertIsNone(values, rest)
            self.assertIn(why, got, rest)
        _, got = self.p.partition(f"s3://{BUCKET}/{PREFIX}/_state/instance=db/checkpoint.json")
        self.assertIn("location template", got)
        _, got = self.p.partition(f"s3://other/{PREFIX}/instance=db/log_type=error/date=2026-12-02/f/g")
        self.assertIn("location template", got)

    def test_java_formats(self):
        self.assertEqual(pj.strptime_format("yyyy-MM-dd"), "%Y-%m-%d")
        self.assertEqual(pj.strptime_format("yyyy/MM/dd/HH"), "%Y/%m/%d/%H")
        with self.assertRaises(ValueError):
            pj.strptime_format("yyyy-MMM")


class WrittenKeys(unittest.TestCase):
    def test_every_key_written_is_in_a_projected_partition(self):
        runs = pj.written()
        self.assertTrue(
            runs,
            f"no chunk key written by the shipper is recorded under {pj.local_stack_dir()}: "
            "run the end-to-end tests first (make test)",
        )
        seen = {"instance": set(), "log_type": set(), "date": set()}
        total = 0
        for stack, keys in runs.items():
            for log_bucket, prefix, bucket, key in keys:
                self.assertEqual(bucket, log_bucket, f"{stack.name}: {key} written outside LOG_BUCKET")
                p = pj.Projection(pj.table(log_bucket, prefix))
                url = f"s3://{bucket}/{key}"
                values, why = p.partition(url)
                self.assertIsNone(why, f"{stack.name}: {url}: {why}")
                self.assertTrue(url.startswith(p.location(values)), url)
                for column, value in values.items():
                    seen[column].add(value)
                total += 1
        # The end-to-end runs write more than one instance and log type, so the match is not
        # vacuous (postgres and aurora-mysql instances: error, slowquery and general logs).
        self.assertGreaterEqual(len(seen["instance"]), 2, seen)
        self.assertGreaterEqual(len(seen["log_type"]), 2, seen)
        self.assertGreater(total, 10)
        print(f"\n{total} keys of {len(runs)} runs, partitions {sorted(seen['log_type'])} x {sorted(seen['instance'])} x {sorted(seen['date'])}")


def line_count(data):
    """Rows TextInputFormat makes of an object: one per newline, and a last line without one."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


class DuckDB(unittest.TestCase):
    def test_gzip_lines_through_a_hive_partitioned_glob(self):
        try:
            import duckdb
        except ImportError:
            self.skipTest("duckdb is not installed (requirements-dev.txt)")
        runs = pj.written()
        archived = [s for s in runs if (s / "archive").is_dir()]
        self.assertTrue(archived, "no end-to-end run saved its archive (tests/e2e/rds_shipper.rs: archive())")
        for stack in archived:
            written = {key for _, _, _, key in runs[stack]}
            prefix = runs[stack][0][1]
            root = stack / "archive"
            objects = sorted(root.glob(f"{prefix}/instance=*/log_type=*/date=*/*/*.log.gz"))
            self.assertTrue(objects, stack)
            expected = {}
            for path in objects:
                key = path.relative_to(root).as_posix()
                self.assertIn(key, written, f"{stack.name}: saved {key} was never written")
                parts = dict(s.split("=", 1) for s in key.split("/") if "=" in s)
                group = (parts["instance"], parts["log_type"], parts["date"])
                expected[group] = expected.get(group, 0) + line_count(gzip.decompress(path.read_bytes()))
            glob = f"{root}/{prefix}/instance=*/log_type=*/date=*/*/*.log.gz"
            # Offline: the CSV reader, gzip and hive partitioning are built in; no extension.
            con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
            rows = con.sql(
                f"""
                SELECT instance, log_type, CAST(date AS VARCHAR), count(*)
                FROM read_csv('{glob}', hive_partitioning = true, hive_types_autocast = false,
                              columns = {{'line': 'VARCHAR'}}, header = false, auto_detect = false,
                              delim = '{chr(1)}', quote = '', escape = '', new_line = '\\n',
                              compression = 'gzip', max_line_size = 8388608)
                WHERE instance IN ({", ".join(f"'{i}'" for i in sorted({g[0] for g in expected}))})
                GROUP BY ALL ORDER BY ALL
                """
            ).fetchall()
            got = {(i, t, d): n for i, t, d, n in rows}
            self.assertEqual(got, expected, stack.name)
            print(f"\n{stack.name}: duckdb read {sum(got.values())} lines of {len(objects)} objects in {len(got)} partitions")


if __name__ == "__main__":
    unittest.main()
