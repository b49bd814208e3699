use std::sync::Arc;

use serde_json::{Value, json};

use super::*;

fn frame(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

fn sent(message: &ToWorker) -> Value {
    serde_json::from_slice(&encode(Path::new("/srv/p"), message).unwrap()).unwrap()
}

#[test]
fn the_load_is_the_hello_and_the_native_hello_is_not_sent() {
    assert!(
        encode(
            Path::new("/srv/p"),
            &ToWorker::Hello {
                build_id: "x".to_owned()
            }
        )
        .is_none()
    );
    let hello = sent(&ToWorker::Load {
        path: "/srv/p/nodes/a/node.py".to_owned(),
        bytes: b"print(1)\n".to_vec(),
    });
    assert_eq!(
        hello,
        json!({"type": "hello", "protocol": 1, "project_root": "/srv/p",
               "libraries": [{"id": 0, "path": "/srv/p/nodes/a/node.py", "source": "print(1)\n"}],
               "max_frame": wire::MAX_FROM_WORKER})
    );
}

#[test]
fn execute_embeds_the_request_json_and_names_the_node_by_uid() {
    let execute = sent(&ToWorker::Execute(ExecuteFrame {
        id: 7,
        node_index: 0,
        uid: Arc::from("py-echo"),
        instance_id: "wf".to_owned(),
        inputs: r#"{"text":["hi"]}"#.to_owned(),
        parameters: r#"[{"name":"p","value":1}]"#.to_owned(),
        graph_node: r#"{"id":1}"#.to_owned(),
        ahead: false,
    }));
    assert_eq!(
        execute,
        json!({"type": "execute", "id": 7, "library": 0, "uid": "py-echo", "instance_id": "wf",
               "inputs": {"text": ["hi"]}, "parameters": [{"name": "p", "value": 1}], "graph_node": {"id": 1}})
    );
}

#[test]
fn replies_carry_bodies_in_base64_and_failures_as_objects() {
    let ok = sent(&ToWorker::HostReply {
        call: 3,
        outcome: Ok(("{}".to_owned(), serde_bytes::ByteBuf::from(b"hi".to_vec()))),
    });
    assert_eq!(ok, json!({"type": "reply", "call": 3, "ok": {}, "body": "aGk="}));
    let failed = sent(&ToWorker::HostReply {
        call: 4,
        outcome: Err(r#"{"kind":"not_found","message":"gone"}"#.to_owned()),
    });
    assert_eq!(
        failed,
        json!({"type": "reply", "call": 4, "error": {"kind": "not_found", "message": "gone"}})
    );
}

#[test]
fn ready_maps_to_loaded_definitions_or_a_refusal() {
    let runtime = json!({"name": "python", "version": "3.11.7", "executable": "/usr/bin/python3", "pid": 1});
    let ready = decode(&frame(json!({"type": "ready", "protocol": 1, "runtime": runtime,
        "libraries": [{"id": 0, "definitions": [{"uid": "a"}]}]})))
    .unwrap();
    let FromWorker::Loaded(Ok(loaded)) = ready else {
        panic!("{ready:?}")
    };
    assert_eq!(
        (loaded.abi_version.as_str(), loaded.definitions.as_str()),
        ("python 3.11.7 (/usr/bin/python3)", r#"[{"uid":"a"}]"#)
    );
    assert!(loaded.refused.is_empty());
    let refused = decode(&frame(json!({"type": "ready", "protocol": 1, "runtime": runtime,
        "libraries": [{"id": 0, "refused": {"stage": "import", "type": "SyntaxError",
            "message": "expected ':'", "file": "/p/nodes/bad/node.py", "line": 5, "traceback": "T"}}]})))
    .unwrap();
    let FromWorker::Loaded(Err(reason)) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(reason, "SyntaxError: expected ':' (/p/nodes/bad/node.py:5)");
    // A group: the members that loaded serve, in order; a uid an earlier
    // member serves is left out; a refused member leaves the rest serving.
    let group = decode(&frame(json!({"type": "ready", "protocol": 1, "runtime": runtime,
        "libraries": [
            {"id": 0, "path": "/p/nodes/a/node.py", "definitions": [{"uid": "a"}]},
            {"id": 1, "path": "/p/nodes/bad/node.py", "refused": {"stage": "import", "type": "SyntaxError",
                "message": "expected ':'", "file": "/p/nodes/bad/node.py", "line": 5}},
            {"id": 2, "path": "/p/nodes/b/node.py", "definitions": [{"uid": "b"}, {"uid": "a"}]}]})))
    .unwrap();
    let FromWorker::Loaded(Ok(loaded)) = group else {
        panic!("{group:?}")
    };
    assert_eq!(loaded.definitions, r#"[{"uid":"a"},{"uid":"b"}]"#);
    assert_eq!(
        loaded.refused,
        vec![(
            "/p/nodes/bad/node.py".to_owned(),
            "SyntaxError: expected ':' (/p/nodes/bad/node.py:5)".to_owned()
        )]
    );
    // Ids out of the order given, or none at all, are violations.
    let shuffled = json!({"type": "ready", "protocol": 1, "runtime": runtime,
        "libraries": [{"id": 1, "definitions": []}, {"id": 0, "definitions": []}]});
    assert!(decode(&frame(shuffled)).is_err());
    let none = json!({"type": "ready", "protocol": 1, "runtime": runtime, "libraries": []});
    assert!(decode(&frame(none)).is_err());
}

#[test]
fn done_status_and_call_decode_and_bad_frames_are_violations() {
    let done = decode(&frame(
        json!({"type": "done", "id": 1, "outcome": "complete", "outputs": null}),
    ))
    .unwrap();
    assert!(matches!(done, FromWorker::Done { id: 1, outcome: Ok(ref o), message: None, next: None } if o == "null"));
    let own = decode(&frame(
        json!({"type": "done", "id": 1, "outcome": "complete", "outputs": {"a": 1}, "message": "mine"}),
    ))
    .unwrap();
    assert!(matches!(own, FromWorker::Done { outcome: Ok(_), message: Some(ref m), .. } if m == "mine"));
    let error = decode(&frame(
        json!({"type": "done", "id": 1, "outcome": "error", "message": "boom"}),
    ))
    .unwrap();
    assert!(matches!(error, FromWorker::Done { outcome: Err(ref m), .. } if m == "boom"));
    let status = decode(&frame(
        json!({"type": "status", "id": 2, "status": {"type": "running"}}),
    ))
    .unwrap();
    assert!(matches!(status, FromWorker::Status { id: 2, ref json } if json == r#"{"type":"running"}"#));
    let call = decode(&frame(
        json!({"type": "call", "id": null, "call": 9, "request": {"op": "exists"}, "body": "aGk="}),
    ))
    .unwrap();
    assert!(
        matches!(call, FromWorker::HostCall { id: wire::NO_EXECUTION, call: 9, ref body, .. } if body.as_slice() == b"hi")
    );
    assert!(matches!(
        decode(&frame(json!({"type": "bye"}))).unwrap(),
        FromWorker::ShutdownDone { hook: None }
    ));
    assert!(matches!(
        decode(&frame(json!({"type": "pong", "seq": 7}))).unwrap(),
        FromWorker::Pong { seq: 7 }
    ));
    for bad in [
        json!({"type": "nonsense"}),
        json!({"type": "done", "id": 1}),
        json!({"type": "done", "id": "1", "outcome": "complete"}),
        json!({"type": "status", "id": 1, "status": "running"}),
        json!({"type": "call", "id": 1, "call": 1, "request": {}, "body": "***"}),
        json!({"type": "pong", "seq": "1"}),
        json!([1]),
    ] {
        assert!(decode(&frame(bad.clone())).is_err(), "{bad}");
    }
    assert!(decode(b"\xff").is_err());
}
