//! The database: SQLite (default) or PostgreSQL behind one pool, chosen by the URL's scheme.
//!
//! Every query is written once, with `$1` placeholders (both backends bind them by number),
//! and uses only `TEXT` and `BIGINT` columns so that rows decode the same on both. Each
//! backend has its own migrations folder (`migrations/sqlite`, `migrations/postgres`),
//! embedded in the binary and kept in step.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, SqlSafeStr};

use crate::{Result, ServerError};

/// The database backend, from the URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:`
    Sqlite,
    /// `postgres:` or `postgresql:`
    Postgres,
}

impl Backend {
    /// The backend of `url`.
    ///
    /// # Errors
    /// [`ServerError::Config`] for another scheme.
    pub fn of(url: &str) -> Result<Self> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            other => Err(ServerError::Config {
                name: "database",
                reason: format!("unknown scheme {other:?}: use sqlite://PATH or postgres://..."),
            }),
        }
    }

    fn migrations(self) -> Vec<Migration> {
        let files: &[(i64, &'static str, &'static str)] = match self {
            Self::Sqlite => &[
                (1, "organizations keys files", include_str!("../migrations/sqlite/0001_organizations_keys_files.sql")),
                (2, "jobs models", include_str!("../migrations/sqlite/0002_jobs_models.sql")),
                (3, "collections", include_str!("../migrations/sqlite/0003_collections.sql")),
                (5, "datasets", include_str!("../migrations/sqlite/0005_datasets.sql")),
                (6, "collection events", include_str!("../migrations/sqlite/0006_collection_events.sql")),
                (4, "conversations", include_str!("../migrations/sqlite/0004_conversations.sql")),
            ],
            Self::Postgres => &[
                (
                    1,
                    "organizations keys files",
                    include_str!("../migrations/postgres/0001_organizations_keys_files.sql"),
                ),
                (2, "jobs models", include_str!("../migrations/postgres/0002_jobs_models.sql")),
                (3, "collections", include_str!("../migrations/postgres/0003_collections.sql")),
                (5, "datasets", include_str!("../migrations/postgres/0005_datasets.sql")),
                (6, "collection events", include_str!("../migrations/postgres/0006_collection_events.sql")),
                (4, "conversations", include_str!("../migrations/postgres/0004_conversations.sql")),
            ],
        };
        files
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    (*sql).into_sql_str(),
                    false,
                )
            })
            .collect()
    }
}

/// A pool of connections to the server's database, migrated to the current schema.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects to `url` (`sqlite://PATH?mode=rwc` or `postgres://...`) and applies the
    /// migrations the database lacks.
    ///
    /// # Errors
    /// [`ServerError::Config`] for an unknown scheme, [`ServerError::Database`] when the
    /// database cannot be reached, [`ServerError::Migrate`] when a migration fails.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let backend = Backend::of(url)?;
        install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect(url)
            .await
            .map_err(ServerError::db("connect"))?;
        if backend == Backend::Sqlite {
            // Readers do not wait for writers; the setting stays with the file.
            sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await.map_err(ServerError::db("journal mode"))?;
        }
        Migrator::with_migrations(backend.migrations()).run(&pool).await?;
        Ok(Self { pool, backend })
    }

    /// The pool, for queries.
    #[must_use]
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The backend.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The statement that claims one row of `table` for a worker: `UPDATE table SET set WHERE
    /// id = (the first row where claimable, by order) AND claimable`; the outer condition makes
    /// a claim that lost a race update nothing. On PostgreSQL the inner select takes its row
    /// `FOR UPDATE SKIP LOCKED`, so workers of other processes claiming at once each get a
    /// different row instead of queueing behind the first one's lock; on SQLite the write
    /// transaction serializes claims already.
    #[must_use]
    pub fn claim_sql(&self, table: &str, set: &str, claimable: &str, order: &str) -> String {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        format!(
            "UPDATE {table} SET {set} WHERE id = \
             (SELECT id FROM {table} WHERE {claimable} ORDER BY {order} LIMIT 1{lock}) AND {claimable}"
        )
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes every connection (waits for those in use).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Now, in unix seconds.
#[must_use]
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Now, in unix milliseconds (orders rows made within one second).
#[must_use]
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_scheme() {
        assert_eq!(Backend::of("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("postgresql://u@h/db").unwrap(), Backend::Postgres);
        assert!(Backend::of("mysql://h/db").is_err());
    }

    #[tokio::test]
    async fn claims_skip_locked_rows_on_postgres_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::connect(&crate::config::sqlite_url(&dir.path().join("t.db")), 1).await.unwrap();
        let sql = |db: &Db| db.claim_sql("jobs", "lease_owner = $1", "status = 'queued'", "created_ms, id");
        assert_eq!(
            sql(&db),
            "UPDATE jobs SET lease_owner = $1 WHERE id = (SELECT id FROM jobs WHERE status = 'queued' \
             ORDER BY created_ms, id LIMIT 1) AND status = 'queued'"
        );
        db.backend = Backend::Postgres;
        assert!(sql(&db).contains("LIMIT 1 FOR UPDATE SKIP LOCKED) AND status = 'queued'"), "{}", sql(&db));
    }

    #[test]
    fn both_backends_have_the_same_migrations() {
        let (s, p) = (Backend::Sqlite.migrations(), Backend::Postgres.migrations());
        assert_eq!(s.len(), p.len());
        for (a, b) in s.iter().zip(&p) {
            assert_eq!((a.version, &a.description), (b.version, &b.description));
        }
    }
}
