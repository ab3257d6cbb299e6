//! Test helpers: chunks, and a minimal HTTP server that speaks OpenAI's chat-completions
//! protocol with scripted replies (for the error paths a real server rarely shows on demand).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use docraft_core::{Chunk, ChunkId, DocId, Span};
use serde_json::{Value, json};

/// A chunk of `text` from document `doc` (its own source name).
pub fn chunk(doc: &str, text: &str) -> Chunk {
    let doc_id = DocId::from_content(doc.as_bytes());
    Chunk {
        id: ChunkId::new(&doc_id, 0, text.len()),
        doc_id,
        source: format!("docs/{doc}"),
        text: text.to_string(),
        span: Span::new(0, text.len()),
        pages: None,
        headings: vec![],
        chunk_index: 0,
        chunk_count: 1,
        metadata: Default::default(),
    }
}

/// What the server answers to one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    /// A 200 chat completion whose message content is `content`.
    pub fn content(content: &str) -> Self {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        });
        Self { status: 200, body: body.to_string(), delay: Duration::ZERO }
    }

    /// An error status with an OpenAI-style error body.
    pub fn error(status: u16) -> Self {
        let body = json!({"error": {"message": format!("mock {status}"), "type": "mock", "param": null, "code": null}});
        Self { status, body: body.to_string(), delay: Duration::ZERO }
    }

    /// A 200 whose body is not JSON.
    pub fn malformed() -> Self {
        Self { status: 200, body: "{\"choices\": [oops".into(), delay: Duration::ZERO }
    }

    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

type Script = dyn Fn(usize, &Value) -> Reply + Send + Sync;

/// A scripted chat-completions server on 0.0.0.0 (reachable on loopback and on the
/// machine's own addresses).
pub struct MockServer {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    pub bodies: Arc<Mutex<Vec<Value>>>,
}

impl MockServer {
    pub fn start(script: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let (r, b) = (Arc::clone(&requests), Arc::clone(&bodies));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (script, r, b) = (Arc::clone(&script), Arc::clone(&r), Arc::clone(&b));
                std::thread::spawn(move || serve(stream, &*script, &r, &b));
            }
        });
        Self { port, requests, bodies }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(stream: TcpStream, script: &Script, count: &AtomicUsize, bodies: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let n = count.fetch_add(1, Ordering::SeqCst);
        bodies.lock().expect("lock").push(value.clone());
        let reply = script(n, &value);
        std::thread::sleep(reply.delay);
        let head = format!(
            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            reply.status,
            reply.body.len()
        );
        if stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(reply.body.as_bytes())).is_err() {
            return;
        }
    }
}

/// One of this machine's own non-loopback IPv4 addresses (for "remote" endpoint tests).
pub fn own_address() -> String {
    let out = std::process::Command::new("hostname").arg("-I").output().expect("hostname -I");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback()))
        .expect("a non-loopback IPv4 address")
        .to_string()
}
