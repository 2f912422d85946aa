"""The local stack's extensions of moto 5.2.5's Step Functions engine: the Distributed Map
features the RDS shipper's state machine uses and moto lacks, implemented as AWS documents them.

- ItemBatcher (absent from moto's ASL grammar): `MaxItemsPerBatch`/`MaxItemsPerBatchPath`,
  `MaxInputBytesPerBatch`/`MaxInputBytesPerBatchPath` (at most 256 KiB), `BatchInput`. Each
  child gets `{"BatchInput": ..., "Items": [...]}` (BatchInput only when set), items in reader
  order, batches filled greedily. The field is taken out of the definition before moto's parser
  sees it and applied to the items in the distributed iteration.
- ResultWriter (moto writes an empty manifest.json only): `<Prefix>/<map run id>/manifest.json`
  and the result files `SUCCEEDED_0.json`, `FAILED_0.json` (each only when it holds a record),
  arrays of child execution records (ExecutionArn, Input and Output as JSON strings, their
  Details, Name, Status, StartDate/StopDate, StateMachineArn, RedriveCount/RedriveStatus, Error
  and Cause for failed ones). The Map's result is `{"MapRunArn", "ResultWriterDetails"}`.
- moto's grammar refuses an integer `ToleratedFailurePercentage` (AWS takes any number from 0
  to 100) and `ExecutionType: EXPRESS`: the first becomes its decimal, the second STANDARD
  (moto runs children in-process either way).
- ResultWriter `Parameters` paths are read from the Map state's input, as AWS reads them (moto
  read them from the children's outputs).
- Tolerated failures (moto reads them and never applies them): a Map run whose failed items
  exceed `ToleratedFailurePercentage` (of all items) or `ToleratedFailureCount` (those set;
  neither set: any failure) fails with `States.ExceedToleratedFailureThreshold`. As AWS counts
  them, in items, not child executions: every item of a failed child's batch has failed.

What stays different from AWS: children run inside moto's process whatever `ExecutionType`
says (no child execution is listed or described, Express or Standard alike); `BatchInput` paths
are JSONPath dot paths (`$`, `$.a.b`, `$$.Execution.Name`-style context paths are refused);
`ItemSelector` with `ItemBatcher` is refused (not needed here); a Map run that fails on the
threshold writes no result files (AWS writes them); results are not split across files (AWS
splits at 5 GB).
"""

from __future__ import annotations

import datetime
import json
import threading
import uuid

MAX_BATCH_BYTES = 256 * 1024
_BATCHERS: dict[str, dict] = {}  # Map state name -> ItemBatcher (as written)
_TOLERANCE_KEYS: dict[str, set] = {}  # Map state name -> the tolerance fields it sets
_LOCK = threading.Lock()

TOLERANCE_FIELDS = (
    "ToleratedFailurePercentage",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCount",
    "ToleratedFailureCountPath",
)


class DefinitionError(ValueError):
    """A definition AWS would refuse (CreateStateMachine's InvalidDefinition)."""


def strip_batchers(definition: str) -> str:
    """Takes every Map state's ItemBatcher out of the definition, remembered by state name, and
    notes which tolerance fields each Map sets."""
    try:
        doc = json.loads(definition)
    except ValueError:
        return definition  # moto's parser reports it
    changed = False

    def walk(states: dict) -> None:
        nonlocal changed
        for name, state in (states or {}).items():
            if not isinstance(state, dict):
                continue
            if state.get("Type") == "Map":
                processor = state.get("ItemProcessor") or state.get("Iterator") or {}
                mode = (processor.get("ProcessorConfig") or {}).get("Mode", "INLINE")
                with _LOCK:
                    _TOLERANCE_KEYS[name] = {k for k in TOLERANCE_FIELDS if k in state}
                # moto's grammar takes only a decimal percentage (10.0) where AWS takes any
                # number from 0 to 100, and only STANDARD children (it runs them in-process).
                pct = state.get("ToleratedFailurePercentage")
                if isinstance(pct, int) and not isinstance(pct, bool):
                    state["ToleratedFailurePercentage"] = float(pct)
                    changed = True
                config = processor.get("ProcessorConfig") or {}
                if config.get("ExecutionType") == "EXPRESS":
                    config["ExecutionType"] = "STANDARD"
                    changed = True
                if "ItemBatcher" in state:
                    if mode != "DISTRIBUTED":
                        raise DefinitionError(f"{name}: ItemBatcher needs a DISTRIBUTED ItemProcessor")
                    if "ItemSelector" in state:
                        raise DefinitionError(f"{name}: ItemSelector with ItemBatcher is not supported by the local stack")
                    batcher = state.pop("ItemBatcher")
                    check_batcher(name, batcher)
                    with _LOCK:
                        _BATCHERS[name] = batcher
                    changed = True
                walk(processor.get("States"))
            for branch in state.get("Branches") or []:
                walk(branch.get("States"))

    walk(doc.get("States"))
    return json.dumps(doc) if changed else definition


def check_batcher(name: str, b: dict) -> None:
    allowed = {"MaxItemsPerBatch", "MaxItemsPerBatchPath", "MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath", "BatchInput"}
    unknown = set(b) - allowed
    if unknown:
        raise DefinitionError(f"{name}: ItemBatcher has unknown fields {sorted(unknown)}")
    if not ({"MaxItemsPerBatch", "MaxItemsPerBatchPath", "MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath"} & set(b)):
        raise DefinitionError(f"{name}: ItemBatcher needs MaxItemsPerBatch(Path) or MaxInputBytesPerBatch(Path)")
    if "BatchInput" in b and not isinstance(b["BatchInput"], dict):
        raise DefinitionError(f"{name}: BatchInput must be an object")


def resolve_path(path: str, value):
    """A JSONPath of dot fields (`$`, `$.a.b`) against `value`."""
    if path == "$":
        return value
    if not path.startswith("$.") or any(c in path for c in "[]*?@"):
        raise ValueError(f"the local stack reads only dot paths ($.a.b), not {path!r}")
    for field in path[2:].split("."):
        if not isinstance(value, dict) or field not in value:
            raise KeyError(f"{path}: no field {field!r} in the state input")
        value = value[field]
    return value


def resolve_template(template: dict, state_input) -> dict:
    out = {}
    for key, value in template.items():
        if key.endswith(".$"):
            out[key[:-2]] = resolve_path(value, state_input)
        elif isinstance(value, dict):
            out[key] = resolve_template(value, state_input)
        else:
            out[key] = value
    return out


def make_batches(items: list, batcher: dict, state_input) -> list:
    """The children's inputs: items grouped greedily by count and by the size of the batch's
    JSON (BatchInput included), in order."""
    def number(field: str):
        if field in batcher:
            return batcher[field]
        if field + "Path" in batcher:
            return resolve_path(batcher[field + "Path"], state_input)
        return None

    max_items = number("MaxItemsPerBatch")
    max_bytes = number("MaxInputBytesPerBatch")
    for label, v in (("MaxItemsPerBatch", max_items), ("MaxInputBytesPerBatch", max_bytes)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{label} must be a positive whole number, not {v!r}")
    max_bytes = min(max_bytes or MAX_BATCH_BYTES, MAX_BATCH_BYTES)
    batch_input = resolve_template(batcher["BatchInput"], state_input) if "BatchInput" in batcher else None

    def wrap(chunk: list) -> dict:
        b = {"Items": chunk}
        if batch_input is not None:
            b["BatchInput"] = batch_input
        return b

    batches, current = [], []
    for item in items:
        candidate = current + [item]
        too_many = max_items is not None and len(candidate) > max_items
        too_big = len(json.dumps(wrap(candidate), separators=(",", ":")).encode()) > max_bytes
        if current and (too_many or too_big):
            batches.append(wrap(current))
            current = [item]
        else:
            current = candidate
        if len(json.dumps(wrap(current), separators=(",", ":")).encode()) > max_bytes:
            raise OverflowError(f"one item alone exceeds the batch limit of {max_bytes} bytes")
    if current:
        batches.append(wrap(current))
    return batches


def items_of(record: dict, batched: bool) -> int:
    """The items a child execution ran: its batch's (an ItemBatcher's `Items`), or its one item."""
    child_input = record.get("input")
    if batched and isinstance(child_input, dict) and isinstance(child_input.get("Items"), list):
        return len(child_input["Items"])
    return 1


def failed_items(records: list, batched: bool) -> tuple[int, int]:
    """(failed items, all items) of a Map run's child records (`batched`: the Map has an
    ItemBatcher)."""
    failed = sum(items_of(r, batched) for r in records if r["status"] != "SUCCEEDED")
    return failed, sum(items_of(r, batched) for r in records)


def exceeds_tolerance(failed: int, total: int, keys: set, count, percentage) -> bool:
    """Whether `failed` of `total` items is beyond the tolerance the Map sets."""
    if failed == 0:
        return False
    has_count = bool(keys & {"ToleratedFailureCount", "ToleratedFailureCountPath"})
    has_pct = bool(keys & {"ToleratedFailurePercentage", "ToleratedFailurePercentagePath"})
    if not has_count and not has_pct:
        return True
    over_count = has_count and failed > count
    over_pct = has_pct and total > 0 and failed * 100.0 / total > percentage
    return over_count or over_pct


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def result_files(map_run_arn: str, state_machine_arn: str, records: list) -> dict:
    """The result files' contents by status (SUCCEEDED, FAILED), records in child order."""
    files: dict[str, list] = {"SUCCEEDED": [], "FAILED": []}
    for r in sorted(records, key=lambda r: r["index"]):
        name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{map_run_arn}/{r['index']}"))
        record = {
            "ExecutionArn": f"{map_run_arn.replace(':mapRun:', ':execution:')}:{name}",
            "Input": json.dumps(r["input"]),
            "InputDetails": {"Included": True},
            "Name": name,
            "RedriveCount": 0,
            "RedriveStatus": "NOT_REDRIVABLE",
            "StartDate": r["start"],
            "StateMachineArn": state_machine_arn,
            "Status": r["status"],
            "StopDate": r["stop"],
        }
        if r["status"] == "SUCCEEDED":
            record["Output"] = json.dumps(r["output"])
            record["OutputDetails"] = {"Included": True}
            files["SUCCEEDED"].append(record)
        else:
            record["Error"] = r.get("error") or "States.TaskFailed"
            record["Cause"] = r.get("cause") or ""
            files["FAILED"].append(record)
    return files


def install() -> None:
    """Patches moto's parser and Distributed Map (see the module's doc)."""
    from moto.stepfunctions.parser.asl.parse import asl_parser
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import distributed_iteration_component as dic
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import distributed_item_processor_worker as dipw
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval import resource_eval_s3 as res3
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent, FailureEventException
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramError
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails

    parser_cls = asl_parser.AmazonStateLanguageParser
    original_parse = parser_cls.parse

    def parse(definition: str):
        try:
            definition = strip_batchers(definition)
        except DefinitionError as e:
            raise asl_parser.ASLParserException(errors=[str(e)])
        return original_parse(definition)

    parser_cls.parse = staticmethod(parse)

    original_map_run = dic.DistributedIterationComponent._map_run

    def fail(env, error: str, cause: str):
        name = StatesErrorName(typ=getattr(StatesErrorNameType, error))
        raise FailureEventException(
            failure_event=FailureEvent(
                env=env,
                error_name=name,
                event_type=HistoryEventType.MapRunFailed,
                event_details=EventDetails(mapRunFailedEventDetails=MapRunFailedEventDetails(error=name.error_name, cause=cause)),
            )
        )

    def map_run(self, env, eval_input):
        record = eval_input.map_run_record
        record._ext_records = []
        record._ext_lock = threading.Lock()
        batcher = _BATCHERS.get(eval_input.state_name)
        if batcher is not None:
            items = env.stack.pop()
            try:
                batches = make_batches(items, batcher, env.states.get_input())
            except OverflowError as e:
                fail(env, "StatesItemReaderFailed", str(e))
            except (KeyError, ValueError) as e:
                fail(env, "StatesRuntime", str(e))
            env.stack.append(batches)
        original_map_run(self, env, eval_input)
        records = record._ext_records
        failed, total = failed_items(records, batcher is not None)
        keys = _TOLERANCE_KEYS.get(eval_input.state_name, set())
        if exceeds_tolerance(failed, total, keys, eval_input.tolerated_failure_count, eval_input.tolerated_failure_percentage):
            fail(env, "StatesExceedToleratedFailureThreshold", f"The specified tolerated failure threshold was exceeded: {failed} of {total} items failed")

    dic.DistributedIterationComponent._map_run = map_run

    original_eval_job = dipw.DistributedItemProcessorWorker._eval_job

    def eval_job(self, env, job):
        start = _now()
        original_eval_job(self, env, job)
        state = env.program_state()
        r = {"index": job.job_index, "input": job.job_input, "start": start, "stop": _now()}
        if isinstance(state, ProgramError) or job.job_output is None:
            r["status"] = "FAILED"
            err = getattr(state, "error", None) or {}
            r["error"], r["cause"] = err.get("error"), err.get("cause")
        else:
            r["status"] = "SUCCEEDED"
            r["output"] = job.job_output
        rec = self._map_run_record
        if hasattr(rec, "_ext_lock"):
            with rec._ext_lock:
                rec._ext_records.append(r)

    dipw.DistributedItemProcessorWorker._eval_job = eval_job

    def handle_put_object(env, resource_runtime_part, state_credentials):
        parameters = env.stack.pop()
        env.stack.pop()  # the children's outputs: written from the records below
        s3 = res3.ResourceEvalS3._get_s3_client(resource_runtime_part=resource_runtime_part, state_credentials=state_credentials)
        record = env.map_run_record_pool_manager.get_all().pop()
        run_id = record.map_run_arn.split(":")[-1]
        prefix = parameters.get("Prefix", "")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        bucket = parameters["Bucket"]
        files = result_files(record.map_run_arn, record.map_state_machine_arn, getattr(record, "_ext_records", []))
        listed = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
        for status, records in files.items():
            if not records:
                continue
            key = f"{prefix}{run_id}/{status}_0.json"
            body = json.dumps(records).encode("utf8")
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            listed[status].append({"Key": key, "Size": len(body)})
        manifest = {"DestinationBucket": bucket, "MapRunArn": record.map_run_arn, "ResultFiles": listed}
        key = f"{prefix}{run_id}/manifest.json"
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest, indent=2).encode("utf8"))
        env.stack.append({"MapRunArn": record.map_run_arn, "ResultWriterDetails": {"Bucket": bucket, "Key": key}})

    res3.ResourceEvalS3._handle_put_object = staticmethod(handle_put_object)

    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer import result_writer_decl as rwd

    def result_writer_eval(self, env):
        # AWS evaluates the ResultWriter's Parameters against the Map state's input; moto
        # evaluated them against the children's outputs (the top of its stack).
        outputs = env.stack.pop()
        env.stack.append(env.states.get_input())
        self.parargs.eval(env=env)
        parameters = env.stack.pop()
        env.stack.pop()
        env.stack.append(outputs)
        env.stack.append(parameters)
        self.resource_eval.eval_resource(env=env)

    rwd.ResultWriter._eval_body = result_writer_eval
