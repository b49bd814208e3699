//! The language runtimes' encoding of the channel (`docs/worker-protocol.md`):
//! each frame one UTF-8 JSON object with a `type`, translated to and from
//! the supervisor's [`ToWorker`] and [`FromWorker`] so one supervisor
//! serves both kinds. Frames from the worker are untrusted: anything that
//! is not a message of the protocol, with the fields its type needs, is an
//! `Err` (a protocol violation, which ends the worker).

use std::path::Path;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{
    execution::wire::{self, ExecuteFrame, FromWorker, ToWorker},
    python_groups::Manifest,
};

/// The protocol version this server speaks.
pub(crate) const PROTOCOL: u32 = 1;

/// The id the `execute` frame names: the worker finds a node by its uid,
/// which is unique among a worker's libraries (a group's members).
const LIBRARY: u32 = 0;

/// How long a worker asked to shut down may give its executions (the
/// server drained it first, so there are none unless they overstayed).
const SHUTDOWN_GRACE_MS: u64 = 1000;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Server → worker.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Out<'a> {
    Hello {
        protocol: u32,
        project_root: &'a str,
        libraries: Vec<HelloLibrary<'a>>,
        max_frame: usize,
    },
    Execute {
        id: u64,
        library: u32,
        uid: &'a str,
        instance_id: &'a str,
        inputs: &'a RawValue,
        parameters: &'a RawValue,
        graph_node: Option<&'a RawValue>,
    },
    Abort {
        id: u64,
    },
    Reply {
        call: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        ok: Option<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a RawValue>,
    },
    Shutdown {
        grace_ms: u64,
    },
    Ping {
        seq: u64,
    },
}

#[derive(Serialize)]
struct HelloLibrary<'a> {
    id: u32,
    path: &'a str,
    source: &'a str,
}

/// Worker → server: a frame's `type`, then the message of that type (one
/// struct each: serde's tagged enums cannot hold raw JSON values).
#[derive(Deserialize)]
struct Tag {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Ready {
    protocol: u32,
    runtime: Runtime,
    libraries: Vec<ReadyLibrary>,
}

#[derive(Deserialize)]
struct Fatal {
    message: String,
}

#[derive(Deserialize)]
struct Pong {
    seq: u64,
}

#[derive(Deserialize)]
struct StatusFrame {
    id: u64,
    status: Box<RawValue>,
}

#[derive(Deserialize)]
struct Done {
    id: u64,
    outcome: Outcome,
    #[serde(default)]
    outputs: Option<Box<RawValue>>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Call {
    id: Option<u64>,
    call: u64,
    request: Box<RawValue>,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Complete,
    Error,
    Aborted,
}

#[derive(Deserialize)]
struct Runtime {
    name: String,
    version: String,
    /// The interpreter's path, shown beside its version.
    #[serde(default)]
    executable: Option<String>,
}

#[derive(Deserialize)]
struct ReadyLibrary {
    id: u32,
    /// The file, for a group's log lines (optional).
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    definitions: Option<Box<RawValue>>,
    #[serde(default)]
    refused: Option<Refused>,
}

#[derive(Deserialize)]
struct Refused {
    #[serde(rename = "type")]
    kind: String,
    message: String,
    file: String,
    line: Option<u64>,
    #[serde(default)]
    traceback: String,
}

/// The `hello` that has the worker load the library at `path` (`source`,
/// as read and trusted by the server), or for a group (`path` a folder,
/// `source` its [`Manifest`]) every member, with ids 0, 1, ...
pub(crate) fn hello(project_root: &Path, path: &str, source: &[u8]) -> Bytes {
    let group = Path::new(path)
        .is_dir()
        .then(|| serde_json::from_slice::<Manifest>(source));
    let single = String::from_utf8_lossy(source);
    let libraries = match &group {
        Some(Ok(manifest)) => manifest
            .members
            .iter()
            .zip(0..)
            .map(|(member, id)| HelloLibrary {
                id,
                path: &member.path,
                source: &member.source,
            })
            .collect(),
        // The reconciler wrote it; a folder without one loads nothing.
        Some(Err(_)) => Vec::new(),
        None => vec![HelloLibrary {
            id: LIBRARY,
            path,
            source: &single,
        }],
    };
    to_frame(&Out::Hello {
        protocol: PROTOCOL,
        project_root: &project_root.to_string_lossy(),
        libraries,
        max_frame: wire::MAX_FROM_WORKER,
    })
}

/// The frame for `message`; `None` for the native handshake's `Hello`,
/// which this protocol folds into its `hello` (sent for `Load`).
pub(crate) fn encode(project_root: &Path, message: &ToWorker) -> Option<Bytes> {
    Some(match message {
        // Python workers are never handed executions ahead.
        ToWorker::Hello { .. } | ToWorker::ReturnAhead | ToWorker::Start { .. } => return None,
        ToWorker::Load { path, bytes } => hello(project_root, path, bytes),
        ToWorker::Execute(frame) => execute(frame),
        ToWorker::Abort { id } => to_frame(&Out::Abort { id: *id }),
        ToWorker::Ping { seq } => to_frame(&Out::Ping { seq: *seq }),
        ToWorker::Shutdown => to_frame(&Out::Shutdown {
            grace_ms: SHUTDOWN_GRACE_MS,
        }),
        ToWorker::HostReply { call, outcome } => match outcome {
            Ok((json, body)) => to_frame(&Out::Reply {
                call: *call,
                ok: Some(raw_or_null(json)),
                body: (!body.is_empty()).then(|| BASE64.encode(body)),
                error: None,
            }),
            Err(failure) => to_frame(&Out::Reply {
                call: *call,
                ok: None,
                body: None,
                error: Some(raw_or_null(failure)),
            }),
        },
    })
}

fn execute(frame: &ExecuteFrame) -> Bytes {
    let graph_node = raw_or_null(&frame.graph_node);
    to_frame(&Out::Execute {
        id: frame.id,
        library: LIBRARY,
        uid: &frame.uid,
        instance_id: &frame.instance_id,
        inputs: raw_or(&frame.inputs, "{}"),
        parameters: raw_or(&frame.parameters, "[]"),
        graph_node: (graph_node.get() != "null").then_some(graph_node),
    })
}

/// `json` as a raw JSON value (the server built it; `null` if it is not JSON).
fn raw_or_null(json: &str) -> &RawValue {
    raw_or(json, "null")
}

fn raw_or<'a>(json: &'a str, fallback: &'static str) -> &'a RawValue {
    serde_json::from_str::<&RawValue>(json)
        .or_else(|_| serde_json::from_str::<&RawValue>(fallback))
        .expect("the fallbacks are JSON")
}

fn to_frame(message: &Out<'_>) -> Bytes {
    Bytes::from(serde_json::to_vec(message).expect("the messages always serialise"))
}

/// One frame from the worker; `Err` says why it is not a message.
pub(crate) fn decode(frame: &[u8]) -> Result<FromWorker, String> {
    let Tag { kind } = parse(frame, "a message")?;
    Ok(match kind.as_str() {
        "ready" => {
            let Ready {
                protocol,
                runtime,
                libraries,
            } = parse(frame, "`ready`")?;
            if protocol != PROTOCOL {
                return Err(format!("`ready` for protocol {protocol}, the server speaks {PROTOCOL}"));
            }
            FromWorker::Loaded(loaded(&runtime, libraries)?)
        }
        "fatal" => {
            let Fatal { message } = parse(frame, "`fatal`")?;
            FromWorker::Loaded(Err(format!("the worker could not start: {message}")))
        }
        "status" => {
            let StatusFrame { id, status } = parse(frame, "`status`")?;
            if !status.get().starts_with('{') {
                return Err(format!("a status for execution {id} that is not an object"));
            }
            FromWorker::Status {
                id,
                json: String::from(Box::<str>::from(status)),
            }
        }
        "done" => {
            let Done {
                id,
                outcome,
                outputs,
                message,
            } = parse(frame, "`done`")?;
            match outcome {
                Outcome::Complete => FromWorker::Done {
                    id,
                    outcome: Ok(outputs.map_or_else(|| "null".to_owned(), |raw| raw.get().to_owned())),
                    message,
                    next: None,
                },
                Outcome::Error => FromWorker::Done {
                    id,
                    outcome: Err(message.ok_or_else(|| format!("an `error` for execution {id} without a message"))?),
                    message: None,
                    next: None,
                },
                Outcome::Aborted => FromWorker::Done {
                    id,
                    outcome: Err(crate::execution::ABORTED.to_owned()),
                    message: None,
                    next: None,
                },
            }
        }
        "call" => {
            let Call {
                id,
                call,
                request,
                body,
            } = parse(frame, "`call`")?;
            FromWorker::HostCall {
                id: id.unwrap_or(wire::NO_EXECUTION),
                call,
                request: request.get().to_owned(),
                body: serde_bytes::ByteBuf::from(match body {
                    Some(body) => BASE64
                        .decode(body)
                        .map_err(|err| format!("host call {call}: `body` is not base64: {err}"))?,
                    None => Vec::new(),
                }),
            }
        }
        "pong" => {
            let Pong { seq } = parse(frame, "`pong`")?;
            FromWorker::Pong { seq }
        }
        "bye" => FromWorker::ShutdownDone { hook: None },
        other => return Err(format!("a message of unknown type `{other}`")),
    })
}

fn parse<'a, T: Deserialize<'a>>(frame: &'a [u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(frame).map_err(|err| format!("not {what} of the protocol: {err}"))
}

/// The `ready` of a worker: its runtime (what the server shows as the
/// library's ABI) and definitions, or why the library was refused:
/// "<type>: <message> (<file>:<line>)". A group's worker answers for each
/// member, in the order given: the library serves the members that loaded
/// (their definitions in that order; a uid already served by an earlier
/// member is left out, with a warning) and is refused only if none did.
/// A member refused is logged with its reason.
fn loaded(runtime: &Runtime, libraries: Vec<ReadyLibrary>) -> Result<Result<wire::LoadedLibrary, String>, String> {
    if libraries.is_empty() {
        return Err("`ready` lists no library".to_owned());
    }
    for (library, expected) in libraries.iter().zip(0u32..) {
        if library.id != expected {
            return Err(format!(
                "`ready` names library {} where {expected} was expected",
                library.id
            ));
        }
    }
    let runtime = match &runtime.executable {
        Some(executable) => format!("{} {} ({executable})", runtime.name, runtime.version),
        None => format!("{} {}", runtime.name, runtime.version),
    };
    let group = libraries.len() > 1;
    let mut served: Vec<Box<RawValue>> = Vec::new();
    let mut uids = std::collections::HashSet::new();
    let mut refusals = Vec::new();
    for library in libraries {
        match (library.definitions, library.refused) {
            (Some(definitions), None) => {
                let definitions: Vec<Box<RawValue>> = serde_json::from_str(definitions.get())
                    .map_err(|err| format!("`definitions` is not a list: {err}"))?;
                for definition in definitions {
                    #[derive(Deserialize)]
                    struct Uid {
                        #[serde(default)]
                        uid: Option<String>,
                    }
                    let uid = serde_json::from_str::<Uid>(definition.get()).ok().and_then(|u| u.uid);
                    if let Some(uid) = &uid
                        && !uids.insert(uid.clone())
                    {
                        tracing::warn!(
                            library = library.path.as_deref().unwrap_or(""),
                            uid,
                            "a node `{uid}` is already served by an earlier file of this group; this one is left out"
                        );
                        continue;
                    }
                    served.push(definition);
                }
            }
            (None, Some(refused)) => {
                if !refused.traceback.is_empty() {
                    tracing::debug!(traceback = %refused.traceback, "the library's refusal");
                }
                let at = match refused.line {
                    Some(line) => format!("{}:{line}", refused.file),
                    None => refused.file,
                };
                let reason = format!("{}: {} ({at})", refused.kind, refused.message);
                if group {
                    tracing::warn!(
                        library = library.path.as_deref().unwrap_or(""),
                        "refused {}: {reason}; the rest of its group serves",
                        library.path.as_deref().unwrap_or("a member")
                    );
                }
                refusals.push((library.path.unwrap_or_default(), reason));
            }
            _ => return Err("a `ready` library needs either `definitions` or `refused`".to_owned()),
        }
    }
    if served.is_empty() && !refusals.is_empty() {
        let reasons: Vec<String> = refusals.into_iter().map(|(_, reason)| reason).collect();
        return Ok(Err(reasons.join("; ")));
    }
    let definitions = serde_json::to_string(&served).map_err(|err| err.to_string())?;
    Ok(Ok(wire::LoadedLibrary {
        abi_version: runtime,
        definitions,
        refused: if group { refusals } else { Vec::new() },
    }))
}

#[cfg(test)]
#[path = "python_wire_tests.rs"]
mod tests;
