//! The Python OpenAI SDK (`openai` from PyPI, unmodified) against a local server, and the
//! OpenAPI document checked by `openapi-spec-validator`: files, and the fine-tuning flow of
//! OpenAI's docs on SmolLM2 (which needs scripts/setup.sh too). Needs PyPI: run with
//! `cargo test -p docraft-server --test openai_python -- --include-ignored`
//! (scripts/test.sh does).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

use common::{TestServer, chat_jsonl};

const FILES_SCRIPT: &str = r#"
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

/// OpenAI's fine-tuning docs, step by step, then pause, resume and cancel on a longer job.
const FINE_TUNE_SCRIPT: &str = r#"
import os, sys, time
import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["BASE_URL"], api_key=os.environ["API_KEY"])
base = os.environ["MODEL"]
t0 = time.time()

def log(*a):
    print(f"[{time.time() - t0:6.1f}s]", *a, flush=True)

def wait(job_id, want, secs=600, bad=("failed", "cancelled")):
    deadline = time.time() + secs
    while True:
        j = client.fine_tuning.jobs.retrieve(job_id)
        if j.status == want:
            return j
        assert j.status not in bad, f"job {job_id} ended {j.status}: {j.error}"
        assert time.time() < deadline, f"job {job_id} still {j.status} after {secs} s"
        time.sleep(0.2)

train = client.files.create(file=open(os.environ["TRAIN"], "rb"), purpose="fine-tune")
valid = client.files.create(file=open(os.environ["VALID"], "rb"), purpose="fine-tune")
assert train.filename == "train.jsonl" and valid.filename == "valid.jsonl", (train, valid)

job = client.fine_tuning.jobs.create(
    model=base,
    training_file=train.id,
    validation_file=valid.id,
    suffix="policy",
    seed=7,
    method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 5}}},
    metadata={"team": "legal"},
)
assert job.id.startswith("ftjob-") and job.object == "fine_tuning.job", job
assert job.status == "validating_files" and job.model == base and job.seed == 7, job
assert job.training_file == train.id and job.validation_file == valid.id, job
assert job.metadata == {"team": "legal"} and job.user_provided_suffix == "policy", job
assert job.method.type == "supervised", job.method
hp = job.method.supervised.hyperparameters
assert (hp.n_epochs, hp.batch_size) == (1, 5), hp
log("created", job.id)

job = wait(job.id, "succeeded")
log("succeeded", job.fine_tuned_model)
model = job.fine_tuned_model
assert model.startswith(f"ft:{base}:acme:policy:"), model
assert len(job.result_files) == 2 and job.finished_at and job.trained_tokens > 0, job
assert job.error is None, job.error

events = client.fine_tuning.jobs.list_events(fine_tuning_job_id=job.id, limit=100)
assert not events.has_more, events
steps = sorted(e.data["step"] for e in events.data if e.type == "metrics")
assert steps == [1, 2], [e.model_dump() for e in events.data]
messages = [e.message for e in events.data]
assert "The job has successfully completed" in messages, messages
assert all(e.object == "fine_tuning.job.event" and e.level in ("info", "warn", "error") for e in events.data)
assert all(a.created_at >= b.created_at for a, b in zip(events.data, events.data[1:])), "newest first"

checkpoints = client.fine_tuning.jobs.checkpoints.list(fine_tuning_job_id=job.id)
assert len(checkpoints.data) == 1, checkpoints
c = checkpoints.data[0]
assert c.step_number == 2 and c.fine_tuning_job_id == job.id, c
assert c.fine_tuned_model_checkpoint == f"{model}:ckpt-step-2", c
metrics = c.metrics.model_dump()
for k in ("step", "train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy",
          "full_valid_loss", "full_valid_mean_token_accuracy"):
    assert isinstance(metrics[k], (int, float)) and not isinstance(metrics[k], bool), (k, metrics)
assert metrics["step"] == 2 and metrics["train_loss"] > 0 and metrics["full_valid_loss"] > 0, metrics

ids = [m.id for m in client.models.list()]
assert model in ids and base in ids, ids
assert client.models.retrieve(model).owned_by == "acme"

csv = client.files.content(job.result_files[0]).read()
assert csv.startswith(b"step,train_loss"), csv[:200]
assert len(csv.decode().strip().splitlines()) == 3, csv

# Pause, resume and cancel a longer job (docraft's own hyperparameters, passed through).
long = client.fine_tuning.jobs.create(
    model=base,
    training_file=train.id,
    seed=7,
    extra_body={"hyperparameters": {"max_steps": 40, "n_epochs": 10, "batch_size": 1}},
)
assert long.hyperparameters.n_epochs == 10 and long.hyperparameters.batch_size == 1, long.hyperparameters
assert getattr(long.hyperparameters, "max_steps", None) == 40, long.hyperparameters
log("created", long.id)
wait(long.id, "running")
deadline = time.time() + 300
while not any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(long.id, limit=100).data):
    assert time.time() < deadline, "no step after 300 s"
    time.sleep(0.2)
paused = client.fine_tuning.jobs.pause(long.id)
assert paused.id == long.id and paused.status in ("running", "paused"), paused.status
paused = wait(long.id, "paused", 120)
log("paused")
events = client.fine_tuning.jobs.list_events(long.id, limit=100).data
at = [e.message for e in events if e.message.startswith("Fine-tuning job paused at step")]
assert len(at) == 1, [e.message for e in events]
step = int(at[0].split()[5])
assert 1 <= step < 40, at
saved = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(long.id).data]
assert step in saved, (step, saved)
try:
    client.fine_tuning.jobs.pause(long.id)
    sys.exit("pausing a paused job should fail")
except openai.ConflictError as e:
    assert e.status_code == 409, e
resumed = client.fine_tuning.jobs.resume(long.id)
assert resumed.status == "queued", resumed.status
wait(long.id, "running", 120)
log("running again after step", step)
cancelled = client.fine_tuning.jobs.cancel(long.id)
assert cancelled.id == long.id and cancelled.status in ("running", "cancelled"), cancelled.status
cancelled = wait(long.id, "cancelled", 120, bad=("failed", "succeeded"))
log("cancelled")
assert cancelled.fine_tuned_model is None and cancelled.finished_at, cancelled
events = client.fine_tuning.jobs.list_events(long.id, limit=100).data
messages = [e.message for e in events]
assert f"Resuming from the checkpoint at step {step}" in messages, messages
assert any(m.startswith("Fine-tuning job cancelled") for m in messages), messages
# Each step's metrics once, across the pause: 1, 2, … with no gap and no repeat.
steps = sorted(e.data["step"] for e in events if e.type == "metrics")
assert steps == list(range(1, len(steps) + 1)) and len(steps) >= step, (step, steps)
try:
    client.fine_tuning.jobs.cancel(long.id)
    sys.exit("cancelling a cancelled job should fail")
except openai.ConflictError as e:
    assert e.status_code == 409, e

# Lists: newest first, filtered by metadata.
assert [j.id for j in client.fine_tuning.jobs.list()] == [long.id, job.id]
assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "legal"})] == [job.id]
assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "sales"})] == []
assert [j.id for j in client.fine_tuning.jobs.list(extra_query={"metadata[team]": "legal"})] == [job.id]
page = client.fine_tuning.jobs.list(limit=1)
assert [j.id for j in page.data] == [long.id] and page.has_more, page

try:
    client.fine_tuning.jobs.retrieve("ftjob-" + "x" * 24)
    sys.exit("retrieving a job that does not exist should fail")
except openai.NotFoundError as e:
    assert e.status_code == 404 and e.code == "not_found", (e, e.body)
log("OK")
print("OK", job.id, model)
"#;

/// A virtual environment with `openai` and `openapi-spec-validator` from PyPI (pip caches
/// the downloads, so each test may make its own).
fn venv() -> tempfile::TempDir {
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
    venv
}

/// Runs `script` with the venv's Python (off the runtime's threads, so the server in the
/// same process keeps answering) and asserts it succeeded; its standard output.
async fn run_python(venv: &Path, script: &'static str, env: Vec<(&'static str, OsString)>) -> String {
    let python = venv.join("bin/python");
    let out: Output =
        tokio::task::spawn_blocking(move || Command::new(python).args(["-c", script]).envs(env).output().unwrap())
            .await
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "script failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PyPI"]
async fn openai_python_sdk_files_round_trip() {
    let venv = venv();
    let server = TestServer::start().await;
    let (_, key) = server.org("acme").await;
    let train = server.dir.path().join("train.jsonl");
    std::fs::write(&train, chat_jsonl(10)).unwrap();
    let openapi = server.dir.path().join("openapi.json");
    let doc = server.http.get(server.url("/openapi.json")).send().await.unwrap().text().await.unwrap();
    std::fs::write(&openapi, doc).unwrap();
    let env = vec![
        ("BASE_URL", server.url("/v1").into()),
        ("API_KEY", key.into()),
        ("TRAIN", train.into()),
        ("OPENAPI", openapi.into()),
    ];
    let stdout = run_python(venv.path(), FILES_SCRIPT, env).await;
    assert!(stdout.starts_with("OK file-"), "{stdout}");
    assert_eq!(server.file_rows().await, 0);
    server.stop().await;
}

/// The fine-tuning flow of OpenAI's docs with the Python SDK: upload, create, poll to
/// `succeeded`, events, checkpoints, models, lists by metadata, the metrics CSV; pause,
/// resume and cancel a second job; a 404 as `NotFoundError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PyPI and scripts/setup.sh"]
async fn openai_python_sdk_fine_tunes_smollm2() {
    let venv = venv();
    let server = common::fast_server(1).await;
    let (_, key) = server.org("acme").await;
    let train = server.dir.path().join("train.jsonl");
    let valid = server.dir.path().join("valid.jsonl");
    std::fs::write(&train, chat_jsonl(10)).unwrap();
    std::fs::write(&valid, chat_jsonl(10)).unwrap();
    let env = vec![
        ("BASE_URL", server.url("/v1").into()),
        ("API_KEY", key.into()),
        ("MODEL", common::SMOLLM2.into()),
        ("TRAIN", train.into()),
        ("VALID", valid.into()),
    ];
    let stdout = run_python(venv.path(), FINE_TUNE_SCRIPT, env).await;
    eprintln!("{stdout}");
    assert!(stdout.lines().last().is_some_and(|l| l.starts_with("OK ftjob-")), "{stdout}");
    server.stop().await;
}
