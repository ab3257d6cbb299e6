//! The Python OpenAI SDK (`openai` from PyPI, unmodified) against a local server, and the
//! OpenAPI document checked by `openapi-spec-validator`. Needs PyPI: run with
//! `cargo test -p docraft-server --test openai_python -- --include-ignored`
//! (scripts/test.sh does).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{TestServer, chat_jsonl};

const SCRIPT: &str = r#"
import json, os, sys
from openai import OpenAI
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

client = OpenAI(base_url=os.environ["BASE_URL"], api_key=os.environ["API_KEY"])
path = os.environ["TRAIN"]
f = client.files.create(file=open(path, "rb"), purpose="fine-tune")
assert f.id.startswith("file-"), f
assert f.object == "file" and f.purpose == "fine-tune" and f.filename == "train.jsonl", f
assert f.bytes == os.path.getsize(path), f
ids = [x.id for x in client.files.list()]
assert ids == [f.id], ids
g = client.files.retrieve(f.id)
assert g.id == f.id and g.bytes == f.bytes, g
content = client.files.content(f.id).read()
assert content == open(path, "rb").read()
d = client.files.delete(f.id)
assert d.deleted and d.id == f.id, d
assert [x.id for x in client.files.list()] == []
try:
    client.files.retrieve(f.id)
    sys.exit("retrieve after delete should fail")
except Exception as e:
    assert type(e).__name__ == "NotFoundError", repr(e)

spec, _ = read_from_filename(os.environ["OPENAPI"])
validate(spec)
print("OK", f.id)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PyPI"]
async fn openai_python_sdk_files_round_trip() {
    let venv = tempfile::tempdir().unwrap();
    let status = Command::new("python3").args(["-m", "venv"]).arg(venv.path()).status().expect("python3");
    assert!(status.success(), "python3 -m venv failed");
    let pip = Command::new(venv.path().join("bin/pip"))
        .args(["install", "--quiet", "openai", "openapi-spec-validator"])
        .output()
        .unwrap();
    assert!(
        pip.status.success(),
        "needs PyPI: `pip install openai openapi-spec-validator` failed (no network?):\n{}",
        String::from_utf8_lossy(&pip.stderr)
    );
    let server = TestServer::start().await;
    let (_, key) = server.org("acme").await;
    let train = server.dir.path().join("train.jsonl");
    std::fs::write(&train, chat_jsonl(10)).unwrap();
    let openapi = server.dir.path().join("openapi.json");
    let doc = server.http.get(server.url("/openapi.json")).send().await.unwrap().text().await.unwrap();
    std::fs::write(&openapi, doc).unwrap();
    let python = venv.path().join("bin/python");
    let base = server.url("/v1");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-c", SCRIPT])
            .env("BASE_URL", base)
            .env("API_KEY", key)
            .env("TRAIN", train)
            .env("OPENAPI", openapi)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "script failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("OK file-"), "{stdout}");
    assert_eq!(server.file_rows().await, 0);
    server.stop().await;
}
