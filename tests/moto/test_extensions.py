"""The extensions' decisions (extensions.py), without a server; the end-to-end test
tests/e2e/rds_fleet.rs runs them inside moto."""

import json
import unittest

import extensions as ext


class Batching(unittest.TestCase):
    def test_items_are_batched_in_order_by_count_with_the_batch_input(self):
        batcher = {"MaxItemsPerBatchPath": "$.plan.size", "BatchInput": {"action": "go", "run.$": "$.plan.run"}}
        batches = ext.make_batches(list(range(7)), batcher, {"plan": {"size": 3, "run": "r1"}})
        self.assertEqual([b["Items"] for b in batches], [[0, 1, 2], [3, 4, 5], [6]])
        self.assertTrue(all(b["BatchInput"] == {"action": "go", "run": "r1"} for b in batches))

    def test_batches_are_cut_by_bytes_and_one_item_over_the_limit_fails(self):
        batches = ext.make_batches(["x" * 40] * 5, {"MaxInputBytesPerBatch": 100}, {})
        self.assertEqual([len(b["Items"]) for b in batches], [2, 2, 1])
        self.assertNotIn("BatchInput", batches[0])
        with self.assertRaises(OverflowError):
            ext.make_batches(["x" * 200], {"MaxInputBytesPerBatch": 100}, {})

    def test_a_bad_size_or_path_is_refused(self):
        for batcher, state in (({"MaxItemsPerBatch": 0}, {}), ({"MaxItemsPerBatchPath": "$.n"}, {"n": "3"}),
                               ({"MaxItemsPerBatchPath": "$.missing"}, {})):
            with self.assertRaises((ValueError, KeyError)):
                ext.make_batches([1], batcher, state)


class Definitions(unittest.TestCase):
    def definition(self, **map_fields):
        state = {"Type": "Map", "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                                                   "StartAt": "T", "States": {"T": {"Type": "Pass", "End": True}}},
                 "End": True, **map_fields}
        return json.dumps({"StartAt": "M", "States": {"M": state}})

    def test_the_batcher_is_taken_out_and_moto_s_grammar_gaps_bridged(self):
        out = json.loads(ext.strip_batchers(self.definition(ItemBatcher={"MaxItemsPerBatch": 2}, ToleratedFailurePercentage=10)))
        m = out["States"]["M"]
        self.assertNotIn("ItemBatcher", m)
        self.assertEqual(ext._BATCHERS["M"], {"MaxItemsPerBatch": 2})
        self.assertEqual(m["ToleratedFailurePercentage"], 10.0)
        self.assertEqual(m["ItemProcessor"]["ProcessorConfig"]["ExecutionType"], "STANDARD")
        self.assertEqual(ext._TOLERANCE_KEYS["M"], {"ToleratedFailurePercentage"})

    def test_a_batcher_aws_would_refuse_is_refused(self):
        for fields in ({"ItemBatcher": {"BatchInput": {}}}, {"ItemBatcher": {"MaxItems": 2}},
                       {"ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": []}}):
            with self.assertRaises(ext.DefinitionError):
                ext.strip_batchers(self.definition(**fields))
        inline = json.dumps({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemBatcher": {"MaxItemsPerBatch": 2},
                             "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Pass", "End": True}}}, "End": True}}})
        with self.assertRaises(ext.DefinitionError):
            ext.strip_batchers(inline)


class Tolerance(unittest.TestCase):
    def test_the_thresholds_set_decide_and_none_set_tolerates_nothing(self):
        pct = {"ToleratedFailurePercentage"}
        self.assertFalse(ext.exceeds_tolerance(1, 10, pct, 0, 10.0))
        self.assertTrue(ext.exceeds_tolerance(2, 10, pct, 0, 10.0))
        self.assertTrue(ext.exceeds_tolerance(1, 10, set(), 0, 0.0))
        self.assertFalse(ext.exceeds_tolerance(0, 10, set(), 0, 0.0))
        both = {"ToleratedFailureCount", "ToleratedFailurePercentage"}
        self.assertTrue(ext.exceeds_tolerance(2, 100, both, 1, 50.0), "either threshold exceeded")

    def test_failures_are_counted_in_items_a_failed_batch_failing_each_of_its_items(self):
        def child(status, n=None):
            return {"status": status, "input": {"BatchInput": {}, "Items": list(range(n))} if n else {"x": 1}}
        # Batches of 5, 5, 1: the small one failed is 1 item of 11 (9%), not 1 child of 3 (33%).
        records = [child("SUCCEEDED", 5), child("SUCCEEDED", 5), child("FAILED", 1)]
        self.assertEqual(ext.failed_items(records, True), (1, 11))
        pct = {"ToleratedFailurePercentage"}
        self.assertFalse(ext.exceeds_tolerance(*ext.failed_items(records, True), pct, 0, 10.0))
        records = [child("FAILED", 5), child("SUCCEEDED", 5), child("SUCCEEDED", 1)]
        self.assertTrue(ext.exceeds_tolerance(*ext.failed_items(records, True), pct, 0, 10.0), "5 of 11 items")
        # Without an ItemBatcher a child is one item, even one whose item holds an `Items` list.
        self.assertEqual(ext.failed_items([child("FAILED"), child("SUCCEEDED"), child("TIMED_OUT")], False), (2, 3))
        self.assertEqual(ext.failed_items([child("FAILED", 5), child("SUCCEEDED", 5)], False), (1, 2))


class ResultFiles(unittest.TestCase):
    def test_records_are_split_by_status_with_the_documented_fields(self):
        records = [
            {"index": 1, "input": {"Items": [2]}, "status": "FAILED", "error": "Lambda.Unknown", "cause": "c", "start": "s", "stop": "t"},
            {"index": 0, "input": {"Items": [1]}, "status": "SUCCEEDED", "output": {"n": 1}, "start": "s", "stop": "t"},
        ]
        files = ext.result_files("arn:aws:states:r:1:mapRun:sm/m:u", "arn:aws:states:r:1:stateMachine:sm/m", records)
        ok, failed = files["SUCCEEDED"][0], files["FAILED"][0]
        self.assertEqual(json.loads(ok["Output"]), {"n": 1})
        self.assertEqual(json.loads(ok["Input"]), {"Items": [1]})
        self.assertEqual((ok["Status"], ok["RedriveCount"], ok["InputDetails"]), ("SUCCEEDED", 0, {"Included": True}))
        self.assertEqual((failed["Error"], failed["Cause"]), ("Lambda.Unknown", "c"))
        self.assertNotIn("Output", failed)


if __name__ == "__main__":
    unittest.main()
