//! Process isolation: a node that crashes, hangs or leaks takes down only
//! its worker process, never the server, and the server recovers. These
//! run in process isolation whatever NANO_TEST_ISOLATION says (in-process,
//! the same faults would end the test's server).

#![cfg(unix)]

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Client, NodesDir, Server, definition_uids, definition_version, eventually, fault_plugin, final_status, is_final,
    lib_name, plugin, request, uids,
};

const FAULT_LIBRARY: &str = "fault/libnano_fault_plugin.so";

fn with_fault_plugin() -> NodesDir {
    NodesDir::examples().with_file(
        &format!("fault/{}", lib_name("nano_fault_plugin")),
        &std::fs::read(fault_plugin()).unwrap(),
    )
}

/// Quick restarts, so the tests need not wait for the production backoff.
const FAST_RESTARTS: &str = "worker_restart_initial_ms = 20\nworker_restart_max_ms = 200";

fn fault(kind: &str, extra: Value) -> Value {
    let mut params = json!({"kind": kind});
    params
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    params
}

#[tokio::test]
async fn every_way_native_code_fails_takes_down_only_its_worker() {
    let server = Server::builder(&with_fault_plugin())
        .config(FAST_RESTARTS)
        .isolated()
        .start();
    let mut client = Client::connect(&server).await;
    let mut crashes = 0.0;
    for (kind, cause) in [
        ("segv", "was killed by SIGSEGV"),
        ("abort", "was killed by SIGABRT"),
        ("exit", "exited with code 3"),
        // Rust's guard page handler reports the overflow, then aborts.
        ("stack", "was killed by SIGABRT"),
        // panic = "abort": the panic ends the process.
        ("panic", "was killed by SIGABRT"),
    ] {
        // In flight at the same moment: one on the same worker, one on
        // another library's.
        let neighbour = format!("neighbour-{kind}");
        client
            .send(&request(
                &neighbour,
                json!(1),
                "fault",
                json!({}),
                fault("sleep", json!({"ms": 20000})),
            ))
            .await;
        assert_eq!(client.next_status(&neighbour, &json!(1)).await["type"], "running");
        let other = format!("other-{kind}");
        client.start_steps(&other, json!(1), 3, 100).await;

        let failing = format!("failing-{kind}");
        client
            .send(&request(&failing, json!(1), "fault", json!({}), fault(kind, json!({}))))
            .await;
        let statuses = client.statuses_until_final(&failing, &json!(1)).await;
        let last = final_status(&statuses);
        let message = last["message"].as_str().unwrap();
        assert_eq!(last["type"], "error", "{kind}");
        assert!(
            message.starts_with(&format!("node crashed: the worker for {FAULT_LIBRARY} {cause}")),
            "{kind}: {message}"
        );
        assert!(message.contains("(2 executions in flight)"), "{kind}: {message}");
        // The neighbour on the same worker gets the same error.
        let neighbour_last = final_status(&client.statuses_until_final(&neighbour, &json!(1)).await).clone();
        assert_eq!(neighbour_last["message"], last["message"], "{kind}");
        // The other library's execution completes.
        let other_statuses = client.statuses_until_final(&other, &json!(1)).await;
        assert_eq!(final_status(&other_statuses)["type"], "complete", "{kind}");
        // The library serves again after its restart.
        let statuses = client.execute("fault-ok", json!({}), json!({})).await;
        assert_eq!(final_status(&statuses)["outputs"]["result"], json!(["ok"]), "{kind}");
        crashes += 1.0;
        assert_eq!(
            server
                .metric(&format!(
                    r#"nano_worker_restarts_total{{library="{FAULT_LIBRARY}",reason="crashed"}}"#
                ))
                .await,
            crashes
        );
    }
    assert_eq!(
        server
            .metric(r#"nano_executions_total{node="fault",outcome="crashed"}"#)
            .await,
        10.0
    );
    // The stack overflow and the panic said so on the worker's stderr,
    // which is in the server's log, tagged with the library.
    let line = server.wait_for_log("has overflowed its stack");
    assert!(line.contains(FAULT_LIBRARY), "{line}");
    server.wait_for_log("deliberate panic in a plugin built with panic");
    assert_eq!(reqwest::get(server.http("/readyz")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_worker_past_its_memory_limit_is_ended() {
    let server = Server::builder(&with_fault_plugin())
        .config(&format!("{FAST_RESTARTS}\nworker_memory_limit_mb = 400"))
        .isolated()
        .start();
    let mut client = Client::connect(&server).await;
    let statuses = client
        .execute("fault", json!({}), fault("alloc", json!({"mb": 600, "ms": 20000})))
        .await;
    let message = final_status(&statuses)["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with(&format!(
            "node crashed: the worker for {FAULT_LIBRARY} exceeded worker_memory_limit_mb (400 MiB)"
        )),
        "{message}"
    );
    let statuses = client.execute("fault-ok", json!({}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
    assert_eq!(
        server
            .metric(&format!(
                r#"nano_worker_restarts_total{{library="{FAULT_LIBRARY}",reason="memory"}}"#
            ))
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_library_that_crashes_while_loading_is_refused_and_the_rest_serve() {
    for (fault, cause) in [("constructor", "SIGSEGV"), ("definitions-segv", "SIGSEGV")] {
        let server = Server::builder(&with_fault_plugin())
            .isolated()
            .env("NANO_TEST_LOAD_FAULT", fault)
            .start();
        let line = server.wait_for_log(&format!("crashed while loading ({cause})"));
        assert!(line.contains("libnano_fault_plugin"), "{fault}: {line}");
        assert_eq!(
            uids(&server.status_document().await),
            ["complex-math", "progress-steps", "simple-text"],
            "{fault}"
        );
        let mut client = Client::connect(&server).await;
        let statuses = client.execute("simple-text", json!({"text": "up"}), json!({})).await;
        assert_eq!(final_status(&statuses)["type"], "complete");
        // Three tries, then refused: no crash loop.
        assert_eq!(server.logs().matches("worker died while loading").count(), 2, "{fault}");
    }
    // `inspect` loads through a worker too: reported, not fatal.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nano-server"))
        .arg("inspect")
        .arg(fault_plugin())
        .env("NANO_TEST_LOAD_FAULT", "constructor")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("refused") && stdout.contains("crashed while loading (SIGSEGV)"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_library_whose_restarts_crash_while_loading_fails_for_good_until_its_file_changes() {
    let flag = tempfile::tempdir().unwrap();
    let fault_file = flag.path().join("load-fault");
    let nodes = with_fault_plugin();
    let server = Server::builder(&nodes)
        .config(&format!("{FAST_RESTARTS}\nwatch_debounce_time = 50"))
        .isolated()
        .env("NANO_TEST_LOAD_FAULT_FILE", fault_file.to_str().unwrap())
        .start();
    let mut client = Client::connect(&server).await;
    let statuses = client.execute("fault-ok", json!({}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");

    // From now on the library crashes whenever a worker loads it; then its
    // serving worker crashes.
    std::fs::write(&fault_file, "constructor").unwrap();
    let statuses = client.execute("fault", json!({}), fault("segv", json!({}))).await;
    assert!(
        final_status(&statuses)["message"].as_str().unwrap().contains("SIGSEGV"),
        "{statuses:?}"
    );
    // Three restarts die while loading: the library fails, once, and its
    // nodes go; the rest serve on.
    let update = client.next_update().await;
    assert_eq!(
        definition_uids(&update),
        ["complex-math", "progress-steps", "simple-text"]
    );
    let line = server.wait_for_log("its worker died while loading 3 times in a row");
    assert!(line.contains(FAULT_LIBRARY), "{line}");
    assert_eq!(server.logs().matches("died while loading 3 times in a row").count(), 1);
    assert_eq!(server.logs().matches("replacement worker failed").count(), 2);
    assert!(server.metric("nano_library_load_failures_total").await >= 1.0);
    let statuses = client.execute("fault-ok", json!({}), json!({})).await;
    assert!(
        final_status(&statuses)["message"]
            .as_str()
            .unwrap()
            .contains("fault-ok"),
        "not served: {statuses:?}"
    );
    let statuses = client.execute("simple-text", json!({"text": "up"}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
    assert!(server.workers().iter().all(|(_, library)| library != FAULT_LIBRARY));

    // The next change to the file is tried again (the fault is gone now).
    std::fs::remove_file(&fault_file).unwrap();
    let path = nodes.path().join(FAULT_LIBRARY);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.push(0); // still the same library, as a new file
    std::fs::write(&path, &bytes).unwrap();
    assert!(definition_uids(&client.next_update().await).contains(&"fault-ok".to_owned()));
    let statuses = client.execute("fault-ok", json!({}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
}

#[tokio::test]
async fn the_restart_delay_doubles_and_a_healthy_spell_resets_it() {
    let server = Server::builder(&with_fault_plugin())
        .config("worker_restart_initial_ms = 50\nworker_restart_max_ms = 5000\nworker_restart_reset_ms = 2000")
        .isolated()
        .start();
    let mut client = Client::connect(&server).await;
    let mut crash = async |n: usize| {
        let statuses = client.execute("fault", json!({}), fault("segv", json!({}))).await;
        assert!(
            final_status(&statuses)["message"].as_str().unwrap().contains("SIGSEGV"),
            "{statuses:?}"
        );
        server.wait_for_log_count("worker restarted", n);
    };
    crash(1).await;
    crash(2).await;
    // Up for longer than worker_restart_reset_ms: the next delay starts over.
    // (Time passing is the condition here, not an event to wait for.)
    tokio::time::sleep(Duration::from_millis(2200)).await;
    crash(3).await;
    let logs = server.logs();
    let delays: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("restarting the worker after a crash"))
        .filter_map(|line| line.split("delay_ms=").nth(1)?.split_whitespace().next())
        .collect();
    assert_eq!(delays, ["50", "100", "50"]);
}

#[tokio::test]
async fn a_library_that_hangs_in_definitions_is_refused_after_the_start_timeout() {
    let server = Server::builder(&with_fault_plugin())
        .config("worker_start_timeout_ms = 1000")
        .isolated()
        .env("NANO_TEST_LOAD_FAULT", "definitions-hang")
        .start();
    server.wait_for_log("did not report its definitions within 1000 ms");
    assert_eq!(
        uids(&server.status_document().await),
        ["complex-math", "progress-steps", "simple-text"]
    );
    eventually("the hanging worker is gone", || async {
        server.workers().iter().all(|(_, library)| library != FAULT_LIBRARY)
    })
    .await;
}

#[tokio::test]
async fn nodes_that_ignore_their_abort_free_their_slots_and_their_workers_go() {
    let server = Server::builder(&with_fault_plugin())
        .config(
            "max_concurrent_executions = 2\nexecution_timeout_ms = 300\nabort_grace_ms = 300\nworker_drain_ms = 1000",
        )
        .isolated()
        .start();
    let mut client = Client::connect(&server).await;
    // More hung executions than slots.
    for n in 0..3 {
        let statuses = client.execute("fault", json!({}), fault("spin", json!({}))).await;
        let last = final_status(&statuses);
        assert_eq!(last["message"], "Execution timed out after 300 ms", "{n}");
    }
    // Everything else is still served, and the server is ready.
    for uid in ["simple-text", "fault-ok"] {
        let inputs = if uid == "simple-text" {
            json!({"text": "x"})
        } else {
            json!({})
        };
        let statuses = client.execute(uid, inputs, json!({})).await;
        assert_eq!(final_status(&statuses)["type"], "complete", "{uid}");
    }
    assert_eq!(reqwest::get(server.http("/readyz")).await.unwrap().status(), 200);
    // The hung workers were replaced and are gone; one worker per library.
    eventually("only one worker per library remains", || async {
        let workers = server.workers();
        workers.len() == 4 && workers.iter().filter(|(_, l)| l == FAULT_LIBRARY).count() == 1
    })
    .await;
    assert_eq!(server.metric("nano_executions_stuck").await, 0.0);
    // One replacement per worker that held a hung node (two hung nodes may
    // share a worker).
    let replaced = server
        .metric(&format!(
            r#"nano_worker_restarts_total{{library="{FAULT_LIBRARY}",reason="hung"}}"#
        ))
        .await;
    assert!((1.0..=3.0).contains(&replaced), "{replaced}");
}

#[tokio::test]
async fn a_hundred_swaps_leave_memory_flat_and_one_worker_per_library() {
    let swap = format!("swap/{}", lib_name("swap"));
    let nodes = NodesDir::examples().with_file(&swap, &std::fs::read(plugin("swap_v1")).unwrap());
    let server = Server::builder(&nodes)
        .config("watch_debounce_time = 20")
        .isolated()
        .start();
    let mut client = Client::connect(&server).await;
    let versions = [
        (std::fs::read(plugin("swap_v2")).unwrap(), "2.0.0"),
        (std::fs::read(plugin("swap_v1")).unwrap(), "1.0.0"),
    ];
    // Warm up: the first swaps settle the allocator and the mappings.
    let swap_to = |n: usize| {
        let (bytes, version) = &versions[n % 2];
        std::fs::write(nodes.path().join(&swap), bytes).unwrap();
        *version
    };
    let mut n = 0;
    let wait_for = async |client: &mut Client, version: &str| {
        while definition_version(&client.next_update().await, "swap-node").as_deref() != Some(version) {}
    };
    for _ in 0..4 {
        let version = swap_to(n);
        wait_for(&mut client, version).await;
        n += 1;
    }
    let settle = || async {
        eventually("one worker per library", || async { server.workers().len() == 4 }).await;
    };
    settle().await;
    let before = server.total_anon_kib();
    for _ in 0..100 {
        let version = swap_to(n);
        wait_for(&mut client, version).await;
        n += 1;
    }
    settle().await;
    // Steady state, not a sample caught mid-free: under load (CI) one
    // sample once came out at 8.1 MiB; the memory is back a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let after = server.total_anon_kib();
        let grown_mib = after.saturating_sub(before) as f64 / 1024.0;
        if grown_mib < 8.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the heap of server + workers grew {grown_mib:.1} MiB over 100 swaps ({before} -> {after} KiB) and stayed there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statuses = client.execute("swap-node", json!({}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
    assert_eq!(
        server.workers().iter().filter(|(_, l)| l == "swap/libswap.so").count(),
        1
    );
}

#[tokio::test]
async fn a_killed_server_leaves_no_worker_behind() {
    let mut server = Server::builder(&with_fault_plugin()).isolated().start();
    let workers = server.workers();
    assert_eq!(workers.len(), 4, "{workers:?}");
    server.kill_hard();
    let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while workers.iter().any(|(pid, _)| alive(*pid)) {
        assert!(
            std::time::Instant::now() < deadline,
            "workers outlived the server: {workers:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stop_first_swap_ends_the_old_worker_before_the_new_one_starts() {
    let swap = format!("swap/{}", lib_name("swap"));
    let nodes = NodesDir::examples().with_file(&swap, &std::fs::read(plugin("swap_v1")).unwrap());
    let server = Server::builder(&nodes)
        .config("watch_debounce_time = 20\n[libraries.\"swap/libswap.so\"]\nswap_strategy = \"stop-first\"")
        .isolated()
        .start();
    let old: Vec<u32> = server
        .workers()
        .into_iter()
        .filter(|(_, l)| l == "swap/libswap.so")
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(old.len(), 1);
    let mut client = Client::connect(&server).await;
    // Running on the old version when the swap comes: it finishes there.
    client
        .send(&request("long", json!(1), "swap-node", json!({}), json!({"ms": 1000})))
        .await;
    assert_eq!(client.next_status("long", &json!(1)).await["type"], "running");
    std::fs::write(nodes.path().join(&swap), std::fs::read(plugin("swap_v2")).unwrap()).unwrap();
    // Arriving while the old version is stopped: it waits for the new one.
    server.wait_for_log("stop-first swap: stopping the old worker");
    client
        .send(&request("during", json!(2), "swap-node", json!({}), json!({"ms": 0})))
        .await;
    let statuses = client.statuses_until_final("long", &json!(1)).await;
    let last = final_status(&statuses);
    assert_eq!(last["type"], "complete", "{last}");
    assert_eq!(last["outputs"]["version"], json!(["1.0.0"]), "{last}");
    let during = client.statuses_until_final("during", &json!(2)).await;
    assert_eq!(
        final_status(&during)["outputs"]["version"],
        json!(["2.0.0"]),
        "{during:?}"
    );
    while definition_version(&client.next_update().await, "swap-node").as_deref() != Some("2.0.0") {}
    // The old worker was gone before the new one was started. (The swap is
    // logged just after the new definitions go out: wait for the line.)
    server.wait_for_log("swapped ");
    let logs = server.logs();
    let stopped = logs
        .find(&format!(
            "the worker for swap/libswap.so exited after its shutdown hook library=swap/libswap.so pid={}",
            old[0]
        ))
        .expect("the old worker exited");
    let swapped = logs.find("swapped ").expect("the swap is logged");
    assert!(stopped < swapped, "{logs}");
    let statuses = client.execute("swap-node", json!({}), json!({})).await;
    assert_eq!(final_status(&statuses)["outputs"]["version"], json!(["2.0.0"]));
    assert_eq!(
        server.workers().iter().filter(|(_, l)| l == "swap/libswap.so").count(),
        1
    );
}

#[tokio::test]
async fn an_execution_waiting_for_a_restart_gives_up_after_worker_restart_wait_ms() {
    // The restart takes 2 s; an execution waits at most 300 ms for it.
    let server = Server::builder(&with_fault_plugin())
        .config("worker_restart_initial_ms = 2000\nworker_restart_max_ms = 2000\nworker_restart_wait_ms = 300")
        .isolated()
        .start();
    let mut client = Client::connect(&server).await;
    let statuses = client.execute("fault", json!({}), fault("segv", json!({}))).await;
    assert!(
        final_status(&statuses)["message"].as_str().unwrap().contains("SIGSEGV"),
        "{statuses:?}"
    );
    // Sent once the server knows (before, it could still reach the dying
    // worker and get "the worker for … had just exited").
    server.wait_for_log("restarting the worker after a crash");
    let statuses = client.execute("fault-ok", json!({}), json!({})).await;
    let message = final_status(&statuses)["message"].as_str().unwrap().to_owned();
    assert_eq!(
        message,
        format!("node crashed: the worker for {FAULT_LIBRARY} is restarting after a crash; try again later")
    );
    // It gave up before the worker came back.
    assert!(!server.logs().contains("worker restarted"), "{}", server.logs());
    // Once it is back, the library serves again.
    server.wait_for_log("worker restarted");
    let statuses = client.execute("fault-ok", json!({}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete", "{statuses:?}");
}

#[tokio::test]
async fn a_stopped_worker_holding_every_slot_does_not_hold_up_other_nodes() {
    // Issue 22: default configuration (no execution timeout), a
    // simple-text worker stopped with SIGSTOP, more simple-text executions
    // sent than there are slots: complex-math still gets its fair slot.
    let server = Server::builder(&NodesDir::examples()).isolated().start();
    let mut stuck = Client::connect(&server).await;
    let warm = stuck.execute("simple-text", json!({"text": ["warm"]}), json!({})).await;
    assert_eq!(final_status(&warm)["type"], "complete");
    let (pid, _) = server
        .workers()
        .into_iter()
        .find(|(_, library)| library.contains("simple_text"))
        .expect("a simple-text worker");
    let stop = |signal: libc::c_int| assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    stop(libc::SIGSTOP);
    const STUCK: usize = 64;
    for i in 0..STUCK {
        stuck
            .send(&request(
                &format!("stuck-{i}"),
                json!(i),
                "simple-text",
                json!({"text": ["x"]}),
                json!({}),
            ))
            .await;
    }
    let mut other = Client::connect(&server).await;
    let math = tokio::time::timeout(
        Duration::from_secs(10),
        other.execute("complex-math", json!({"a": [2], "b": [3]}), json!({"operation": "add"})),
    )
    .await
    .expect("complex-math answers while simple-text's worker is stopped");
    assert_eq!(final_status(&math)["outputs"]["result"], json!([5]), "{math:?}");

    // Resumed, the stuck ones all finish: nothing was lost.
    stop(libc::SIGCONT);
    for i in 0..STUCK {
        let statuses = stuck.statuses_until_final(&format!("stuck-{i}"), &json!(i)).await;
        assert_eq!(final_status(&statuses)["type"], "complete", "stuck-{i}");
    }
}

#[tokio::test]
async fn a_stalled_worker_is_replaced_and_each_of_its_executions_ends_with_one_502() {
    // Issue 22, the default configuration (a 10 s heartbeat, no execution
    // timeout): simple-text's worker stopped with SIGSTOP while it holds as
    // many executions as there are slots.
    let server = Server::builder(&NodesDir::examples()).isolated().start();
    let http = reqwest::Client::new();
    let execute = |uid: &str, inputs: Value| {
        let request = http
            .post(server.http(&format!("/nodes/{uid}/execute")))
            .json(&json!({"inputs": inputs, "parameters": {"operation": "add"}}));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let readyz = || async {
        let response = reqwest::get(server.http("/readyz")).await.unwrap();
        let status = response.status();
        (status, response.json::<Value>().await.unwrap())
    };
    let (status, body) = execute("simple-text", json!({"text": ["warm"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(readyz().await.1["status"], "ready");
    let (pid, _) = server
        .workers()
        .into_iter()
        .find(|(_, library)| library.contains("simple_text"))
        .expect("a simple-text worker");
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) }, 0);

    let slots = std::thread::available_parallelism().unwrap().get() * 4;
    let stuck: Vec<_> = (0..slots)
        .map(|i| tokio::spawn(execute("simple-text", json!({"text": [format!("stuck-{i}")]}))))
        .collect();
    // Other nodes are served meanwhile (fair slots; the issue asks for
    // 2 s, this allows 5 for a loaded CI machine and prints what it took).
    let asked = std::time::Instant::now();
    let (status, body) = execute("complex-math", json!({"a": [2], "b": [3]})).await;
    eprintln!(
        "complex-math answered in {:?} with simple-text stalled",
        asked.elapsed()
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"]["result"], json!([5]));
    assert!(asked.elapsed() < Duration::from_secs(5), "{:?}", asked.elapsed());

    // Silent for half its heartbeat: degraded, still 200.
    eventually("readyz to say degraded", || async {
        let (status, body) = readyz().await;
        assert_eq!(status, 200, "{body}");
        body["status"] == "degraded" && body["reason"].as_str().unwrap().contains("simple_text")
    })
    .await;
    // Past the heartbeat: each stuck execution that began in the stopped
    // worker ends with one 502 saying why. One that was handed ahead to it
    // (complex-math took a slot first) had not begun: it runs on the new
    // worker instead.
    let mut stalled = 0;
    for handle in stuck {
        let (status, body) = handle.await.unwrap();
        if status == 200 {
            assert_eq!(body["status"], "complete", "{body}");
            continue;
        }
        assert_eq!(status, 502, "{body}");
        let error = body["message"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("node stalled: the worker for processing/simple_text_node/")
                && error.contains("stopped answering for"),
            "{body}"
        );
        stalled += 1;
    }
    assert!(stalled >= slots - 1, "{stalled} of {slots} stalled");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the stopped worker was ended"
    );
    // The node serves again, from a new worker, and the server is ready.
    let (status, body) = execute("simple-text", json!({"text": ["again"]})).await;
    assert_eq!(status, 200, "{body}");
    eventually("readyz to say ready again", || async {
        readyz().await.1["status"] == "ready"
    })
    .await;
    let restarts = server
        .metric(&format!(
            r#"nano_worker_restarts_total{{library="processing/simple_text_node/{}",reason="stalled"}}"#,
            lib_name("simple_text_node")
        ))
        .await;
    assert_eq!(restarts, 1.0);
}

/// Issue 23: a node whose runs are short runs on the thread that reads
/// the worker's channel (no hand-over to a pool thread, the cost of a
/// trivial execution). If such a node then blocks, reading moves to a new
/// thread: the worker keeps answering its heartbeat and runs other
/// executions meanwhile, and that node goes back to the pool.
#[tokio::test]
async fn a_short_node_runs_on_the_reading_thread_and_one_that_then_blocks_does_not_stall_its_worker() {
    let thread = |statuses: &[Value]| {
        let done = final_status(statuses);
        assert_eq!(done["type"], "complete", "{statuses:?}");
        let thread = &done["outputs"]["thread"];
        thread
            .as_str()
            .or_else(|| thread[0].as_str())
            .unwrap_or_else(|| panic!("no thread: {done:?}"))
            .to_owned()
    };
    // Whether a run goes inline follows its node's measured run time, which
    // a loaded machine can stretch (a debug build, tests in parallel): an
    // attempt whose long run was not inline starts again, on a new server.
    for _attempt in 0..3 {
        let server = Server::builder(&NodesDir::examples_and_test_plugin())
            .config("worker_heartbeat_ms = 400")
            .start();
        let mut client = Client::connect(&server).await;
        // The first run is on the pool (its threads are `node-worker-N`),
        // which measures it; once its average run is short, it runs on the
        // reading thread.
        let first = thread(&client.execute("test-stubborn", json!({}), json!({"ms": 0})).await);
        assert!(first.starts_with("node-worker"), "{first}");
        let mut reader = first;
        for _ in 0..200 {
            reader = thread(&client.execute("test-stubborn", json!({}), json!({"ms": 0})).await);
            if !reader.starts_with("node-worker") {
                break;
            }
        }
        assert!(!reader.starts_with("node-worker"), "never ran inline: {reader}");

        // Now it blocks for 10 heartbeats: another execution of the same
        // worker still runs, and nothing is taken for stalled.
        let mut blocked = Client::connect(&server).await;
        blocked
            .send(&request(
                "long",
                json!(1),
                "test-stubborn",
                json!({}),
                json!({"ms": 4000}),
            ))
            .await;
        while blocked.next_status("long", &json!(1)).await["message"] != "working, not listening" {}
        let echo = client.execute("test-echo", json!({"text": ["hi"]}), json!({})).await;
        assert_eq!(final_status(&echo)["type"], "complete", "{echo:?}");
        let long = thread(&blocked.statuses_until_final("long", &json!(1)).await);
        assert!(!server.logs().contains("stalled"), "{}", server.logs());
        if long != reader {
            eprintln!("the long run went to the pool ({long}); again");
            continue;
        }
        // It blocked the reading thread and reading moved on; the node went
        // back to the pool.
        let after = thread(&client.execute("test-stubborn", json!({}), json!({"ms": 0})).await);
        assert!(after.starts_with("node-worker"), "{after}");
        return;
    }
    panic!("in 3 attempts the long run never ran on the reading thread");
}

// Executions handed ahead: a short node's executions beyond the free slots
// wait in its worker, and start there as slots of its node free.

/// A server whose two slots a burst of short executions overflows.
fn two_slot_server() -> Server {
    Server::builder(&NodesDir::examples_and_test_plugin())
        .config("max_concurrent_executions = 2")
        .config(FAST_RESTARTS)
        .isolated()
        .start()
}

/// Runs `test-stubborn` (it returns at once) until the server has measured
/// it short and its worker runs it on the reading thread.
async fn warm_up(client: &mut Client) {
    for _ in 0..50 {
        let statuses = client.execute("test-stubborn", json!({}), json!({"ms": 0})).await;
        assert_eq!(final_status(&statuses)["type"], "complete", "{statuses:?}");
    }
}

/// Sends `count` executions of `test-stubborn` of `instance` (node ids 0..),
/// all before reading an answer. `midway` runs once `count / 10` have ended.
/// Returns the statuses of each, by node id.
async fn burst(
    client: &mut Client,
    instance: &str,
    count: usize,
    midway: impl FnOnce(),
) -> std::collections::HashMap<u64, Vec<Value>> {
    for id in 0..count {
        client
            .send(&request(
                instance,
                json!(id),
                "test-stubborn",
                json!({}),
                json!({"ms": 0}),
            ))
            .await;
    }
    let mut midway = Some(midway);
    let mut statuses: std::collections::HashMap<u64, Vec<Value>> = std::collections::HashMap::new();
    let mut ended = 0;
    while ended < count {
        let frame = client
            .recv_where(|f| f["type"] == "node_status" && f["instanceId"] == instance)
            .await;
        let status = frame["payload"]["status"].clone();
        if is_final(&status) {
            ended += 1;
            if ended == count / 10
                && let Some(midway) = midway.take()
            {
                midway();
            }
        }
        let id = frame["payload"]["nodeId"].as_u64().expect("a node id");
        statuses.entry(id).or_default().push(status);
    }
    statuses
}

/// Every execution got exactly one final status, last, after `running`
/// unless it never began (aborted while it waited), and nothing is left
/// running or waiting in the server.
async fn each_ended_once(server: &Server, statuses: &std::collections::HashMap<u64, Vec<Value>>, count: usize) {
    assert_eq!(statuses.len(), count, "every execution answered");
    for (id, statuses) in statuses {
        assert!(
            statuses[0]["type"] == "running" || statuses.len() == 1,
            "{id}: {statuses:?}"
        );
        assert_eq!(statuses.iter().filter(|s| is_final(s)).count(), 1, "{id}: {statuses:?}");
        assert!(is_final(statuses.last().unwrap()), "{id}: {statuses:?}");
    }
    eventually("nothing is left running or waiting", || async {
        server.metric("nano_executions_in_flight").await == 0.0 && server.metric("nano_executions_queued").await == 0.0
    })
    .await;
}

#[tokio::test]
async fn a_short_nodes_executions_beyond_the_free_slots_go_ahead_to_its_worker_and_each_ends_once() {
    let server = two_slot_server();
    let mut client = Client::connect(&server).await;
    warm_up(&mut client).await;
    let statuses = burst(&mut client, "burst", 400, || {}).await;
    each_ended_once(&server, &statuses, 400).await;
    for statuses in statuses.values() {
        assert_eq!(final_status(statuses)["type"], "complete", "{statuses:?}");
    }
    let ahead = server.metric("nano_executions_handed_ahead_total").await;
    assert!(ahead > 0.0, "two slots, 400 executions: some went ahead");
    // Still two slots: another node's execution starts and ends as usual.
    let echo = client.execute("test-echo", json!({"text": ["hi"]}), json!({})).await;
    assert_eq!(final_status(&echo)["type"], "complete", "{echo:?}");
}

#[tokio::test]
async fn executions_waiting_ahead_in_a_worker_that_dies_run_on_its_replacement() {
    // Whether executions wait ahead at the moment of the kill depends on
    // timing (the worker may have caught up): an attempt where none came
    // back starts again, on a new server.
    for _attempt in 0..3 {
        let server = two_slot_server();
        let mut client = Client::connect(&server).await;
        warm_up(&mut client).await;
        let (pid, _) = server
            .workers()
            .into_iter()
            .find(|(_, library)| library.contains("test_plugin"))
            .expect("the test plugin's worker");
        let statuses = burst(&mut client, "crash", 1000, || {
            // SAFETY: signalling a child process of the test's server.
            assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
        })
        .await;
        each_ended_once(&server, &statuses, 1000).await;
        let failed: Vec<&Value> = statuses
            .values()
            .map(|statuses| final_status(statuses))
            .filter(|status| status["type"] != "complete")
            .collect();
        // Only those holding its two slots were running in it; the ones
        // waiting ahead there had not begun, and ran on the new worker.
        assert!(failed.len() <= 2, "{failed:?}");
        for status in &failed {
            assert!(status["message"].as_str().unwrap().contains("crashed"), "{status:?}");
        }
        if server.metric("nano_executions_given_back_total").await > 0.0 {
            return;
        }
        eprintln!("nothing waited ahead in the worker when it was killed; again");
    }
    panic!("in 3 attempts nothing waited ahead in the worker when it was killed");
}

#[tokio::test]
async fn stopping_an_instance_ends_its_executions_waiting_ahead_once_and_frees_their_places() {
    let server = two_slot_server();
    let mut client = Client::connect(&server).await;
    warm_up(&mut client).await;
    let stop = json!({"type": "stop_workflow_instance", "instanceId": "stopped"});
    let mut stopper = Client::connect(&server).await;
    let handle = tokio::runtime::Handle::current();
    let statuses = burst(&mut client, "stopped", 1000, || {
        handle.spawn(async move { stopper.send(&stop).await });
    })
    .await;
    each_ended_once(&server, &statuses, 1000).await;
    let aborted = statuses
        .values()
        .filter(|statuses| final_status(statuses)["type"] == "error")
        .count();
    assert!(aborted > 0, "the stop came while executions were left");
    // Every place was freed: a full burst runs again.
    let again = burst(&mut client, "again", 100, || {}).await;
    each_ended_once(&server, &again, 100).await;
}
