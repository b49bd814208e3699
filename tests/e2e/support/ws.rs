//! The orchestrator's side of the Nano protocol: a WebSocket client and
//! the frames it sends.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use super::{PATIENCE, Server, is_final};

/// A `request_execution` frame; `params` maps parameter names to values.
pub fn request(instance: &str, node_id: Value, uid: &str, inputs: Value, params: Value) -> Value {
    let parameters: Vec<Value> = params
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "type": "request_execution",
        "serverUid": "orchestrator",
        "instanceId": instance,
        "payload": {
            "nodeId": node_id,
            "nodeUid": uid,
            "graphNode": {"id": node_id, "uid": uid, "parameters": parameters, "x": 10, "y": 20},
            "inputs": inputs,
        }
    })
}

/// A WebSocket client speaking the Nano protocol.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    pub handshake: Value,
    /// Frames received while waiting for something else.
    backlog: Vec<Value>,
}

impl Client {
    pub async fn connect(server: &Server) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .expect("WebSocket connects");
        let client = Self::opened(ws).await;
        assert_eq!(client.handshake["type"], "handshake");
        client
    }

    /// A client on an open connection, once the server's handshake came.
    async fn opened(ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>) -> Self {
        let mut client = Self {
            ws,
            handshake: Value::Null,
            backlog: Vec::new(),
        };
        client.handshake = client.next_frame().await;
        client
    }

    /// Connects with extra request headers; the HTTP status on refusal.
    pub async fn try_connect(server: &Server, headers: &[(&str, &str)]) -> Result<Self, u16> {
        use tokio_tungstenite::tungstenite::{
            Error,
            client::IntoClientRequest,
            http::{HeaderName, HeaderValue},
        };
        let mut request = server.ws_url().into_client_request().unwrap();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            request
                .headers_mut()
                .insert(name, HeaderValue::from_str(value).unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Self::opened(ws).await),
            Err(Error::Http(response)) => Err(response.status().as_u16()),
            Err(other) => panic!("WebSocket connect failed: {other}"),
        }
    }

    /// As [`Client::try_connect`], near the connection cap: `Err(None)` when
    /// the server closed the connection before any HTTP answer (it counted
    /// connections still closing against `max_http_connections`).
    pub async fn try_connect_at_capacity(server: &Server) -> Result<Self, Option<u16>> {
        use tokio_tungstenite::tungstenite::Error;
        match tokio_tungstenite::connect_async(server.ws_url()).await {
            Ok((ws, _)) => Ok(Self::opened(ws).await),
            Err(Error::Http(response)) => Err(Some(response.status().as_u16())),
            Err(Error::Io(_) | Error::Protocol(_) | Error::ConnectionClosed | Error::AlreadyClosed) => Err(None),
            Err(other) => panic!("WebSocket connect failed: {other}"),
        }
    }

    /// The next raw message (close frames included), for limit tests.
    pub async fn next_message(&mut self) -> Option<Message> {
        tokio::time::timeout(PATIENCE, self.ws.next())
            .await
            .expect("a message in time")
            .map(|m| m.expect("the message reads"))
    }

    pub async fn send(&mut self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    /// The next text frame from the wire, as JSON.
    async fn next_frame(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame arrives in time")
                .expect("the connection stays open")
                .expect("the frame reads");
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).expect("server frames are JSON");
                }
                Message::Close(frame) => panic!("server closed the connection: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame matching `pred`, keeping the others for later.
    pub async fn recv_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        loop {
            let frame = self.next_frame().await;
            if pred(&frame) {
                return frame;
            }
            self.backlog.push(frame);
        }
    }

    /// The next frame of any kind (backlog first).
    pub async fn recv(&mut self) -> Value {
        self.recv_where(|_| true).await
    }

    /// The next status of execution (instance, node_id).
    pub async fn next_status(&mut self, instance: &str, node_id: &Value) -> Value {
        let frame = self
            .recv_where(|f| {
                f["type"] == "node_status" && f["instanceId"] == instance && &f["payload"]["nodeId"] == node_id
            })
            .await;
        frame["payload"]["status"].clone()
    }

    /// Every status of one execution, up to and including the final one.
    pub async fn statuses_until_final(&mut self, instance: &str, node_id: &Value) -> Vec<Value> {
        let mut statuses = Vec::new();
        loop {
            let status = self.next_status(instance, node_id).await;
            let done = is_final(&status);
            statuses.push(status);
            if done {
                return statuses;
            }
        }
    }

    /// Runs one execution and returns all its statuses.
    pub async fn execute(&mut self, uid: &str, inputs: Value, params: Value) -> Vec<Value> {
        let instance = format!("inst-{}", rand_suffix());
        self.send(&request(&instance, json!(1), uid, inputs, params)).await;
        self.statuses_until_final(&instance, &json!(1)).await
    }

    /// Frames received but not yet consumed.
    pub fn backlog(&self) -> &[Value] {
        &self.backlog
    }

    /// Reads until the server's close frame; its code (fails the test if
    /// the connection ends without one).
    pub async fn close_code(&mut self) -> tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode {
        loop {
            match self.next_message().await {
                Some(Message::Close(Some(frame))) => return frame.code,
                Some(Message::Close(None)) | None => panic!("closed without a close frame"),
                Some(_) => continue,
            }
        }
    }

    /// The next `definitions_update`.
    pub async fn next_update(&mut self) -> Value {
        self.recv_where(|f| f["type"] == "definitions_update").await
    }

    /// Starts a run of `progress-steps` that reports `steps` times, one
    /// every `delay_ms`: an execution that stays in flight while a test
    /// stops, drains or disconnects around it.
    pub async fn start_steps(&mut self, instance: &str, node_id: Value, steps: u32, delay_ms: u32) {
        let params = json!({"steps": steps, "delay_ms": delay_ms});
        self.send(&request(instance, node_id, "progress-steps", json!({}), params))
            .await;
    }

    /// Waits for the first progress report of an execution: it is running.
    pub async fn until_progress(&mut self, instance: &str, node_id: &Value) {
        while self.next_status(instance, node_id).await.get("progress").is_none() {}
    }

    /// The raw WebSocket, for tests that read and write on their own.
    pub fn into_inner(self) -> WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>> {
        self.ws
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) * 1000 + std::process::id() as u64 % 1000
}
