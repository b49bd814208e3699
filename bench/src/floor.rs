//! The floor: a bare WebSocket server speaking just enough of the Nano
//! protocol to answer `simple-text`. Each `request_execution` is parsed and
//! answered with `running` then `complete`, inline on its connection (frames
//! that arrived together are answered with one flush): no plugin, registry,
//! scheduling or abort handling. The best this machine can
//! do with the same protocol and the same JSON library.
//!
//! Usage: floor [port]   (prints `[NANOSERVER_READY]` when listening)

use std::io::Write;

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::{WebSocketStream, tungstenite::Message};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args().nth(1).map(|p| p.parse()).transpose()?.unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "floor listening on http://{} (WebSocket on /)",
        listener.local_addr()?
    )?;
    writeln!(stdout, "[NANOSERVER_READY]")?;
    stdout.flush()?;
    drop(stdout);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(err) = serve(stream).await {
                eprintln!("floor: connection ended: {err}");
            }
        });
    }
}

async fn serve(stream: TcpStream) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    ws.send(Message::text(
        json!({"type": "handshake", "serverUid": "floor", "name": "floor", "nodes": []}).to_string(),
    ))
    .await?;
    // Frames that already arrived are answered together with one flush,
    // as nano-server's writer does: the floor must not lose on syscalls.
    let mut next = ws.next().await;
    while let Some(message) = next {
        if let Message::Text(text) = message? {
            answer(&mut ws, text.as_str()).await?;
        }
        next = match ws.next().now_or_never() {
            Some(ready) => ready,
            None => {
                ws.flush().await?;
                ws.next().await
            }
        };
    }
    Ok(())
}

/// Queues `running` and `complete` for one request (no flush).
async fn answer(ws: &mut WebSocketStream<TcpStream>, text: &str) -> anyhow::Result<()> {
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        return Ok(());
    };
    if frame["type"] != "request_execution" {
        return Ok(());
    }
    let instance = &frame["instanceId"];
    let payload = &frame["payload"];
    let node_id = &payload["nodeId"];
    let text = payload["inputs"]["text"][0].as_str().unwrap_or_default();
    let uppercase = payload["graphNode"]["parameters"]
        .as_array()
        .and_then(|params| params.iter().find(|p| p["name"] == "uppercase"))
        .is_some_and(|p| p["value"] == true);
    let output = if uppercase {
        text.to_uppercase()
    } else {
        text.to_owned()
    };
    let status = |status: Value| {
        json!({"type": "node_status", "serverUid": "floor", "instanceId": instance,
               "payload": {"nodeId": node_id, "status": status}})
        .to_string()
    };
    ws.feed(Message::text(status(
        json!({"type": "running", "message": "Starting execution..."}),
    )))
    .await?;
    ws.feed(Message::text(status(json!({
        "type": "complete",
        "message": "Execution finished.",
        "outputs": {"text": [output]},
    }))))
    .await?;
    Ok(())
}
