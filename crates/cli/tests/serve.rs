//! `docraft admin` and `docraft serve` as a user runs them: an organization and keys made
//! from the command line work against the server, which stops cleanly on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn docraft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_docraft")).args(args).output().unwrap()
}

#[test]
fn admin_commands_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let out = docraft(&["admin", "org", "create", "acme", "--data", data, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = created["api_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("dck_"), "{created}");
    assert_eq!(created["organization"]["name"], "acme");
    // The same name again is refused.
    assert!(!docraft(&["admin", "org", "create", "acme", "--data", data]).status.success());
    let out = docraft(&["admin", "key", "create", "--org", "acme", "--name", "ci", "--data", data, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = docraft(&["admin", "key", "list", "--org", "acme", "--data", data, "--json"]);
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys.len(), 2);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&key), "a listing shows a key");
    let revoke_id = second["key"]["id"].as_str().unwrap();
    let out = docraft(&["admin", "key", "revoke", "--org", "acme", revoke_id, "--data", data, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let revoked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(revoked["revoked_at"].is_i64(), "{revoked}");

    let mut server = Command::new(env!("CARGO_BIN_EXE_docraft"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data", data])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().to_string();
    let get = |path: &str, key: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        use std::io::{Read, Write};
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    assert!(get("/v1/files", &key).starts_with("HTTP/1.1 200"));
    assert!(get("/v1/files", second["api_key"].as_str().unwrap()).starts_with("HTTP/1.1 401"));
    let term = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = server.wait().unwrap();
    assert!(status.success(), "docraft serve exited with {status} on SIGTERM");
}
