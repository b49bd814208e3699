"""The Python worker runtime (server/python/nano_worker), driven as a
subprocess over its real framing by a stand-in for the server
(harness.py). Standard library only:

    python3 tests/python/test_runtime.py        (or: python3 -m unittest, from tests/python)

Set NANO_SDK_PYTHON to an interpreter with nanograph-sdk 0.2.3 installed to
also run the project's shapes with the installed SDK (routed through the
server) instead of the bundled stand-in; /tmp/sdkvenv/bin/python is used
when it exists.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.join(HERE, "project")
EDGE = os.path.join(HERE, "edge")
# Unset: the venv of the brief when it exists; set and empty: skip.
SDK_PYTHON = os.environ.get(
    "NANO_SDK_PYTHON", "/tmp/sdkvenv/bin/python" if os.path.exists("/tmp/sdkvenv/bin/python") else ""
)
START = harness.STARTING


def complete(outputs, message="Execution finished."):
    return {"type": "complete", "message": message, "outputs": outputs}


def error(message):
    return {"type": "error", "message": message}


class ProjectShapes(unittest.TestCase):
    """The node shapes of issue 21's differential test, all in one worker
    (the `project` grouping), with the bundled SDK stand-in."""

    python = sys.executable
    installed_sdk = False

    @classmethod
    def setUpClass(cls):
        cls.worker = harness.Worker(PROJECT, harness.discover(os.path.join(PROJECT, "nodes")), python=cls.python)
        cls.ready = cls.worker.hello()

    @classmethod
    def tearDownClass(cls):
        cls.worker.close()

    def tearDown(self):
        self.assertEqual(self.worker.violations, [])

    def test_ready_names_the_runtime_and_every_library(self):
        runtime = self.ready["runtime"]
        self.assertEqual(self.ready["protocol"], 1)
        self.assertEqual(runtime["name"], "python")
        self.assertTrue(os.path.isabs(runtime["executable"]))
        self.assertRegex(runtime["version"], r"^3\.\d+\.\d+")
        self.assertEqual(runtime["sdk"]["installed"], self.installed_sdk)
        self.assertEqual(runtime["sdk"]["version"], "0.2.3")
        libraries = self.ready["libraries"]
        self.assertEqual([lib["id"] for lib in libraries], list(range(len(self.worker.paths))))
        self.assertTrue(all("definitions" in lib for lib in libraries), libraries)

    def test_definitions_are_the_registered_ones_with_type_server(self):
        definitions = {d["uid"]: d for lib in self.ready["libraries"] for d in lib["definitions"]}
        readme = definitions["my-unique-python-node-id"]
        self.assertEqual(readme["type"], "server")
        self.assertEqual(readme["parameters"][0]["label"], "Parameter 1")
        self.assertEqual(list(readme)[-1], "type")  # {**definition, 'type': 'server'}

    def test_async_execute(self):
        statuses = self.worker.run(
            "py-async-echo", inputs={"text": ["hi"]}, parameters=[{"name": "uppercase", "value": True}]
        )
        self.assertEqual(statuses, [START, complete({"text": ["HI"], "unicode": ["é✓"]})])

    def test_sync_execute_runs_in_a_thread(self):
        statuses = self.worker.run("py-sync-sum", inputs={"a": [2], "b": [40]})
        self.assertEqual(statuses, [START, complete({"sum": [42], "off_main_thread": [True]})])

    def test_progress_statuses_in_order_before_the_final_one(self):
        statuses = self.worker.run("py-progress", parameters=[{"name": "steps", "value": 4}])
        steps = [
            {"type": "running", "message": f"Step {i}/4", "progress": {"step": i, "total": 4}} for i in range(1, 5)
        ]
        self.assertEqual(statuses, [START] + steps + [complete({"steps": [4]})])

    def test_concurrent_executions_keep_their_own_order(self):
        numbers = [self.worker.start("py-progress", parameters=[{"name": "steps", "value": 5}]) for _ in range(6)]
        for number in numbers:
            statuses = self.worker.collect(number)
            self.assertEqual([s.get("progress", {}).get("step") for s in statuses[1:-1]], [1, 2, 3, 4, 5])
            self.assertEqual(statuses[-1], complete({"steps": [5]}))

    def test_init_runs_once_before_executions(self):
        for _ in range(2):
            self.assertEqual(
                self.worker.run("py-init"), [START, complete({"init_calls": [1], "seen_uid": ["py-init"]})]
            )

    def test_graph_node_instance_id_and_parameters(self):
        graph_node = {"id": 12, "x": 3.5, "y": 0, "parameters": [{"name": "label", "value": "mine"}]}
        statuses = self.worker.run("py-context", graph_node=graph_node, instance_id="wf-42")
        self.assertEqual(
            statuses[-1],
            complete(
                {
                    "instance_id": ["wf-42"],
                    "graph_node_id": [12],
                    "graph_node_x": [3.5],
                    "parameters": [[{"name": "label", "value": "mine"}]],
                    "aborted": [False],
                }
            ),
        )

    def test_helper_module_from_the_project_root(self):
        statuses = self.worker.run("py-slug", inputs={"text": ["Hello, Nano World!"]})
        self.assertEqual(statuses, [START, complete({"slug": ["hello-nano-world"]})])

    def test_an_exception_is_its_message_and_a_traceback_on_stderr(self):
        statuses = self.worker.run("py-raise", inputs={"value": ["x"]})
        self.assertEqual(statuses, [START, error("cannot handle 'x'")])
        time.sleep(0.1)
        log = self.worker.stderr_text()
        self.assertIn("Traceback (most recent call last)", log)
        self.assertIn('nodes/faults/raises/node.py", line 17, in helper', log)

    def test_readme_creating_nodes_example(self):
        statuses = self.worker.run("my-unique-python-node-id", inputs={"input1": ["x"]})
        self.assertEqual(
            statuses,
            [
                START,
                {"type": "running", "message": "Processing..."},
                complete({"output1": "Processed by Python: ['x']"}),
            ],
        )

    def test_readme_progress_example(self):
        statuses = self.worker.run("readme-progress")
        steps = [
            {"type": "running", "message": f"Processing step {i}/5", "progress": {"step": i, "total": 5}}
            for i in range(1, 6)
        ]
        self.assertEqual(statuses, [START] + steps + [complete({"result": "done"})])

    def test_own_complete_ends_the_execution_once(self):
        statuses = self.worker.run("py-own-complete")
        self.assertEqual(
            statuses,
            [
                START,
                {"type": "running", "message": "about to finish"},
                complete({"value": ["sent"]}, message="Finished by the node"),
            ],
        )

    def test_send_status_works_from_a_sync_execute(self):
        statuses = self.worker.run("py-sync-status")
        self.assertEqual([s["message"] for s in statuses[1:-1]], ["thread step 1", "thread step 2"])
        self.assertEqual(statuses[-1], complete({"done": [True]}))

    def test_abort_ends_with_the_native_message(self):
        statuses = self.worker.run_and_abort("py-abortable")
        self.assertEqual(
            statuses, [START, {"type": "running", "message": "waiting for a stop"}, error("Execution aborted")]
        )
        # The worker still serves.
        self.assertEqual(self.worker.run("py-slug", inputs={"text": ["A b"]})[-1], complete({"slug": ["a-b"]}))

    def test_pings_are_answered(self):
        self.assertLess(self.worker.ping(7), 1.0)


@unittest.skipUnless(SDK_PYTHON, "no interpreter with nanograph-sdk installed (NANO_SDK_PYTHON)")
class ProjectShapesWithInstalledSdk(ProjectShapes):
    """The same shapes where nanograph-sdk 0.2.3 is installed: the real
    package is used, its registration and asset functions rerouted."""

    python = SDK_PYTHON or sys.executable
    installed_sdk = True

    def test_service_errors_are_aiohttp_client_errors_once_aiohttp_is_loaded(self):
        check = (
            "import aiohttp; from nano_worker import services; "
            "e = services.failure('not_found', 'gone'); "
            "assert isinstance(e, aiohttp.ClientError) and isinstance(e, services.ServiceError), type(e).__mro__"
        )
        env = dict(os.environ, PYTHONPATH=harness.RUNTIME_PATH)
        subprocess.run([self.python, "-c", check], env=env, check=True)


class EdgeCases(unittest.TestCase):
    """What the SDK does differently, or cannot do: refusals, sync init,
    blocking nodes, host services, outputs JSON cannot carry."""

    @classmethod
    def setUpClass(cls):
        paths = [p for p in harness.discover(os.path.join(EDGE, "nodes")) if "/crash/" not in p]
        cls.worker = harness.Worker(EDGE, paths)
        cls.ready = cls.worker.hello()
        cls.libraries = {os.path.relpath(cls.worker.paths[lib["id"]], EDGE): lib for lib in cls.ready["libraries"]}

    @classmethod
    def tearDownClass(cls):
        cls.worker.close()

    def tearDown(self):
        self.assertEqual(self.worker.violations, [])

    def test_discovery_skips_venv_and_pycache_folders(self):
        found = [os.path.relpath(p, EDGE) for p in harness.discover(os.path.join(EDGE, "nodes"))]
        self.assertNotIn("nodes/.venv/lib/node.py", found)
        self.assertNotIn("nodes/pair/__pycache__/node.py", found)
        self.assertIn("nodes/pair/node.py", found)

    def test_a_syntax_error_refuses_its_library_with_type_message_and_line(self):
        refused = self.libraries["nodes/syntax_error/node.py"]["refused"]
        self.assertEqual((refused["stage"], refused["type"], refused["line"]), ("import", "SyntaxError", 5))
        self.assertIn("expected ':'" if sys.version_info >= (3, 10) else "invalid syntax", refused["message"])
        self.assertTrue(refused["file"].endswith("nodes/syntax_error/node.py"))

    def test_an_import_error_refuses_its_library(self):
        refused = self.libraries["nodes/import_error/node.py"]["refused"]
        self.assertEqual((refused["type"], refused["line"]), ("ModuleNotFoundError", 2))
        self.assertIn("a_module_nobody_installed", refused["message"])

    def test_an_init_that_raises_refuses_its_library(self):
        refused = self.libraries["nodes/init_raises/node.py"]["refused"]
        self.assertEqual((refused["stage"], refused["type"], refused["line"]), ("init", "RuntimeError", 9))
        self.assertEqual(refused["message"], "model file missing: weights.bin")
        self.assertIn("Traceback", refused["traceback"])

    def test_one_file_may_register_several_nodes(self):
        definitions = self.libraries["nodes/pair/node.py"]["definitions"]
        self.assertEqual([d["uid"] for d in definitions], ["py-pair-a", "py-pair-b"])
        self.assertEqual([d["type"] for d in definitions], ["server", "server"])
        self.assertEqual(definitions[1]["width"], 240)
        self.assertEqual(self.worker.run("py-pair-a")[-1], complete({"which": ["a"]}))
        self.assertEqual(self.worker.run("py-pair-b")[-1], complete({"which": ["b"]}))

    def test_a_sync_init_runs(self):
        self.assertEqual(self.worker.run("py-sync-init")[-1], complete({"ready": [True], "module_registered": [True]}))

    def test_asset_and_resource_functions_go_through_the_server(self):
        statuses = self.worker.run("py-assets")
        self.assertEqual(statuses[-1]["type"], "complete", statuses)
        out = statuses[-1]["outputs"]
        small = out["small"][0]
        self.assertEqual(out["small"][1:], ["hello.txt", "text"])
        self.assertEqual(out["buffer"], ["hello asset"])
        self.assertEqual(out["big_ok"], [True])
        self.assertEqual(out["exists"], [True, False])
        self.assertEqual(out["listed"], [small])
        self.assertEqual(out["presigned"], [f"https://nanocore.test/p/{small}"])
        self.assertEqual(out["download"], [f"https://nanocore.test/assets/{small}/download"])
        self.assertEqual(out["missing"], ["ServiceError: asset not found: sha256:" + "0" * 64])
        self.assertIn("Invalid asset hash", out["bad_hash"][0])
        self.assertEqual(self.worker.nanocore.assets[small]["meta"], {"k": 1})  # JSON, not str(dict)
        ops = [c["op"] for c in self.worker.nanocore.calls]
        self.assertIn("upload_begin", ops)
        self.assertEqual(ops.count("upload_write"), 4)
        self.assertEqual(self.worker.nanocore.resources, {})
        allocate = next(c for c in self.worker.nanocore.calls if c["op"] == "allocate")
        self.assertEqual(
            allocate,
            {
                "op": "allocate",
                "resourceId": "gpu-1",
                "type": "model",
                "name": "weights",
                "vramUsage": 1024,
                "metadata": {"a": 1},
            },
        )

    def test_init_may_call_host_services_before_ready(self):
        self.assertIsNone(self.worker.call_ids[0])  # made while loading: no execution
        statuses = self.worker.run("py-init-asset")
        self.assertEqual(statuses[-1]["outputs"]["asset"][0][:7], "sha256:")
        self.assertIn(statuses[-1]["outputs"]["asset"][0], self.worker.nanocore.assets)

    def test_a_call_after_the_execution_ended_fails_in_the_worker(self):
        self.assertEqual(self.worker.run("py-late-call")[-1], complete({"early": [True]}))
        time.sleep(0.2)
        self.assertEqual(
            self.worker.run("py-late-report")[-1], complete({"late": ["ServiceError: the execution has ended"]})
        )
        self.assertNotIn("late", [c.get("type") for c in self.worker.nanocore.calls])

    def test_an_aborted_thread_node_is_done_when_it_returns(self):
        statuses = self.worker.run_and_abort("py-abort-sync")
        self.assertEqual(statuses, [START, {"type": "running", "message": "polling"}, error("Execution aborted")])

    def test_outputs_json_cannot_carry_are_an_error(self):
        statuses = self.worker.run("py-nan")
        self.assertEqual(statuses[-1]["type"], "error")
        # The JSON module's wording varies a little between Python versions.
        self.assertIn(
            "the node returned outputs that cannot be sent as JSON: Out of range float values", statuses[-1]["message"]
        )
        statuses = self.worker.run("py-bytes")
        self.assertEqual(statuses[-1]["type"], "error")
        self.assertIn("bytes is not JSON serializable", statuses[-1]["message"])
        time.sleep(0.1)
        self.assertIn("a print goes to stdout", self.worker.stdout_text())
        self.assertIn("dropped a status that is not a dict", self.worker.stderr_text())

    def test_pings_are_answered_while_a_node_blocks_the_event_loop(self):
        number = self.worker.start("py-block-loop")
        time.sleep(0.2)
        self.assertLess(self.worker.ping(1), 1.5)
        self.assertEqual(self.worker.collect(number)[-1], complete({"slept": [3.0]}))

    def test_pings_are_answered_while_a_node_blocks_its_thread(self):
        number = self.worker.start("py-block-thread")
        time.sleep(0.2)
        self.assertLess(self.worker.ping(2), 1.5)
        self.assertEqual(self.worker.collect(number)[-1], complete({"slept": [3.0]}))

    def test_an_unknown_node_is_an_error(self):
        number = self.worker.start("py-pair-a")
        self.worker.collect(number)
        self.worker.executions[99] = __import__("queue").Queue()
        self.worker.send(
            {
                "type": "execute",
                "id": 99,
                "library": 0,
                "uid": "nope",
                "instance_id": "i",
                "inputs": {},
                "parameters": [],
                "graph_node": {},
            }
        )
        self.assertEqual(self.worker.collect(99)[-1], error("Node definition not found: nope"))


class Lifecycle(unittest.TestCase):
    """Start, crash, shutdown and the end of the channel."""

    def start(self, *relative):
        worker = harness.Worker(EDGE, [os.path.join(EDGE, "nodes", r, "node.py") for r in relative])
        self.addCleanup(worker.close)
        return worker

    def test_a_node_that_exits_ends_the_worker(self):
        worker = self.start("crash", "pair")
        worker.hello()
        statuses = worker.run("py-exit")
        self.assertEqual(statuses[-1], error("the worker exited"))
        self.assertEqual(worker.process.wait(timeout=10), 3)

    def test_a_segfault_ends_the_worker_with_the_python_stack_on_stderr(self):
        worker = self.start("crash")
        worker.hello()
        self.assertEqual(worker.run("py-segfault")[-1], error("the worker exited"))
        self.assertEqual(worker.process.wait(timeout=10), -11)
        self.assertIn("Fatal Python error: Segmentation fault", worker.stderr_text())
        self.assertIn("in crash", worker.stderr_text())

    def test_outputs_over_the_frame_limit_are_an_error_not_a_violation(self):
        worker = harness.Worker(PROJECT, [os.path.join(PROJECT, "nodes/basic/async_echo/node.py")])
        self.addCleanup(worker.close)
        worker.hello(max_frame=4096)
        statuses = worker.run("py-async-echo", inputs={"text": ["x" * 10000]})
        self.assertEqual(statuses[-1]["type"], "error")
        self.assertTrue(statuses[-1]["message"].startswith("the node's outputs are too large to send: "), statuses[-1])
        self.assertEqual(worker.run("py-async-echo", inputs={"text": ["small"]})[-1]["type"], "complete")
        self.assertEqual(worker.violations, [])

    def test_pings_are_answered_while_libraries_load(self):
        worker = harness.Worker(EDGE, [os.path.join(EDGE, "slow_import", "node.py")])
        self.addCleanup(worker.close)
        worker.send_source = False
        worker.send(
            {"type": "hello", "protocol": 1, "project_root": EDGE, "libraries": [{"id": 0, "path": worker.paths[0]}]}
        )
        time.sleep(0.5)
        self.assertLess(worker.ping(5), 1.5)
        self.assertEqual(worker.control.get(timeout=20)["type"], "ready")

    def test_a_frame_of_an_unknown_type_is_ignored(self):
        worker = self.start("pair")
        worker.hello()
        worker.send({"type": "something_from_a_later_server"})
        self.assertEqual(worker.run("py-pair-a")[-1], complete({"which": ["a"]}))
        self.assertIn("ignored a `something_from_a_later_server` frame", worker.stderr_text())

    def test_another_protocol_version_is_refused(self):
        worker = self.start("pair")
        answer = worker.hello(protocol=99)
        self.assertEqual(answer["type"], "fatal")
        self.assertIn("speaks protocol 1", answer["message"])
        self.assertEqual(worker.process.wait(timeout=10), 2)

    def start_blocked(self):
        """A worker whose thread node blocks for 3 s, and that execution."""
        worker = self.start("blocking")
        worker.hello()
        number = worker.start("py-block-thread")
        time.sleep(0.1)
        return worker, number

    def test_shutdown_gives_running_executions_their_grace(self):
        worker, number = self.start_blocked()
        began = time.monotonic()
        worker.send({"type": "shutdown", "grace_ms": 10000})
        # Aborted by the shutdown, done when its thread returns (3 s), then bye.
        self.assertEqual(worker.collect(number, aborted=True)[-1], error("Execution aborted"))
        self.assertEqual(worker.control.get(timeout=10)["type"], "bye")
        self.assertEqual(worker.process.wait(timeout=10), 0)
        self.assertLess(time.monotonic() - began, 8)

    def test_shutdown_does_not_wait_past_its_grace(self):
        worker, _ = self.start_blocked()
        began = time.monotonic()
        worker.send({"type": "shutdown", "grace_ms": 300})
        self.assertEqual(worker.control.get(timeout=10)["type"], "bye")
        self.assertEqual(worker.process.wait(timeout=10), 0)
        self.assertLess(time.monotonic() - began, 2.5)

    def test_a_process_a_node_starts_does_not_hold_the_channel(self):
        worker = self.start("child")
        worker.hello()
        outputs = worker.run("py-child")[-1]["outputs"]
        self.addCleanup(os.kill, outputs["pid"][0], 9)
        self.assertEqual(outputs["argv"], [[]])
        worker.process.kill()
        worker.process.wait(timeout=10)
        # The worker's end closed with it: end of file, though its child lives.
        self.assertTrue(worker.eof.wait(timeout=5))

    def test_the_end_of_the_channel_ends_the_worker(self):
        worker = self.start("pair")
        worker.hello()
        # shutdown, not close: the harness's reader thread still holds the socket.
        worker.sock.shutdown(socket.SHUT_RDWR)
        self.assertEqual(worker.process.wait(timeout=10), 0)

    def test_source_sent_by_the_server_is_what_runs(self):
        worker = self.start("pair")
        worker.send_source = False
        path = worker.paths[0]
        with open(path, encoding="utf-8") as handle:
            source = handle.read().replace("'py-pair-a'", "'py-pair-checked'")
        worker.send(
            {
                "type": "hello",
                "protocol": 1,
                "project_root": EDGE,
                "libraries": [{"id": 0, "path": path, "source": source}],
            }
        )
        ready = worker.control.get(timeout=20)
        worker.ready = ready
        self.assertEqual([d["uid"] for d in ready["libraries"][0]["definitions"]], ["py-pair-checked", "py-pair-b"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
