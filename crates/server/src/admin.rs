//! Organizations and API keys: what `docraft admin` does, as library functions.
//!
//! A key is `dck_` + 32 random base62 characters from the operating system. Only its sha256
//! (hex) and a short prefix for listing are stored; the plain key is shown once, when made.
//! Requests are authenticated by looking the hash up and comparing it in constant time.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::db::{Db, now};
use crate::ids::{KEY_PREFIX, new_api_key, new_id};
use crate::{Result, ServerError};

/// Characters of a key kept for listing (`dck_` + 8).
pub const KEY_LISTED_CHARS: usize = KEY_PREFIX.len() + 8;
/// Longest organization or key name.
pub const MAX_NAME_CHARS: usize = 64;

/// An organization: the unit of isolation. Its files, jobs and models are never visible to
/// another organization's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Org {
    /// `org-…`
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Whether its jobs may send data to endpoints off this machine.
    pub allow_remote: bool,
}

impl Org {
    fn from_row(row: &AnyRow) -> Result<Self> {
        let d = || ServerError::db("decode organization");
        Ok(Self {
            id: row.try_get("id").map_err(d())?,
            name: row.try_get("name").map_err(d())?,
            created_at: row.try_get("created_at").map_err(d())?,
            allow_remote: row.try_get::<i64, _>("allow_remote").map_err(d())? != 0,
        })
    }
}

/// A plain API key, shown once. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainKey(String);

impl PlainKey {
    /// The key, for the one time it is shown.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PlainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlainKey({}…)", self.0.get(..KEY_LISTED_CHARS).unwrap_or("?"))
    }
}

/// An API key as listed: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApiKeyInfo {
    /// `key-…`
    pub id: String,
    /// The organization's id.
    pub organization_id: String,
    /// The key's name (unique per organization is not required).
    pub name: String,
    /// The key's first characters (`dck_` + 8), to recognize it.
    pub prefix: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` while the key works.
    pub revoked_at: Option<i64>,
}

impl ApiKeyInfo {
    fn from_row(row: &AnyRow) -> Result<Self> {
        let d = || ServerError::db("decode api key");
        Ok(Self {
            id: row.try_get("id").map_err(d())?,
            organization_id: row.try_get("organization_id").map_err(d())?,
            name: row.try_get("name").map_err(d())?,
            prefix: row.try_get("prefix").map_err(d())?,
            created_at: row.try_get("created_at").map_err(d())?,
            revoked_at: row.try_get("revoked_at").map_err(d())?,
        })
    }
}

/// The sha256 of a key, in hex: what the database stores.
#[must_use]
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn check_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
        && name.trim() == name;
    if ok {
        Ok(())
    } else {
        Err(ServerError::bad_request(
            format!(
                "{what} name {name:?}: 1 to {MAX_NAME_CHARS} letters, digits, spaces, '-', '_' or '.', \
                 not starting or ending with a space"
            ),
            Some("name"),
            Some("invalid_name"),
        ))
    }
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// Creates an organization and its first API key (named `default`).
///
/// # Errors
/// [`ServerError::BadRequest`] for an unusable name, [`ServerError::Conflict`] when the name
/// is taken, [`ServerError::Database`] when the database fails.
pub async fn create_org(db: &Db, name: &str) -> Result<(Org, PlainKey)> {
    check_name("organization", name)?;
    let org = Org { id: new_id("org-")?, name: name.to_string(), created_at: now(), allow_remote: false };
    let mut tx = db.pool().begin().await.map_err(ServerError::db("begin"))?;
    sqlx::query("INSERT INTO organizations (id, name, created_at, allow_remote) VALUES ($1, $2, $3, $4)")
        .bind(&org.id)
        .bind(&org.name)
        .bind(org.created_at)
        .bind(i64::from(org.allow_remote))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                ServerError::Conflict(format!("an organization named {name:?} already exists"))
            } else {
                ServerError::Database { context: "insert organization", source: e }
            }
        })?;
    let (_, key) = insert_key(&mut tx, &org.id, "default").await?;
    tx.commit().await.map_err(ServerError::db("commit"))?;
    Ok((org, key))
}

async fn insert_key(conn: &mut sqlx::AnyConnection, org_id: &str, name: &str) -> Result<(ApiKeyInfo, PlainKey)> {
    let key = new_api_key()?;
    let info = ApiKeyInfo {
        id: new_id("key-")?,
        organization_id: org_id.to_string(),
        name: name.to_string(),
        prefix: key.get(..KEY_LISTED_CHARS).unwrap_or(&key).to_string(),
        created_at: now(),
        revoked_at: None,
    };
    sqlx::query(
        "INSERT INTO api_keys (id, organization_id, name, prefix, hash, created_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL)",
    )
    .bind(&info.id)
    .bind(&info.organization_id)
    .bind(&info.name)
    .bind(&info.prefix)
    .bind(hash_key(&key))
    .bind(info.created_at)
    .execute(conn)
    .await
    .map_err(ServerError::db("insert api key"))?;
    Ok((info, PlainKey(key)))
}

/// The organization named `name`.
///
/// # Errors
/// [`ServerError::NotFound`] when there is none, [`ServerError::Database`] when the database
/// fails.
pub async fn find_org(db: &Db, name: &str) -> Result<Org> {
    let row = sqlx::query("SELECT id, name, created_at, allow_remote FROM organizations WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await
        .map_err(ServerError::db("find organization"))?;
    row.as_ref()
        .map(Org::from_row)
        .transpose()?
        .ok_or_else(|| ServerError::NotFound { kind: "organization", id: name.to_string() })
}

/// Allows (or forbids again) the organization named `name` to send documents to endpoints off
/// this machine (dataset jobs with a remote generator; personal data is redacted first).
///
/// # Errors
/// [`ServerError::NotFound`] for an unknown organization, [`ServerError::Database`].
pub async fn set_allow_remote(db: &Db, name: &str, allow: bool) -> Result<Org> {
    let org = find_org(db, name).await?;
    sqlx::query("UPDATE organizations SET allow_remote = $1 WHERE id = $2")
        .bind(i64::from(allow))
        .bind(&org.id)
        .execute(db.pool())
        .await
        .map_err(ServerError::db("allow remote"))?;
    find_org(db, name).await
}

/// Every organization, by name.
///
/// # Errors
/// [`ServerError::Database`] when the database fails.
pub async fn list_orgs(db: &Db) -> Result<Vec<Org>> {
    let rows = sqlx::query("SELECT id, name, created_at, allow_remote FROM organizations ORDER BY name")
        .fetch_all(db.pool())
        .await
        .map_err(ServerError::db("list organizations"))?;
    rows.iter().map(Org::from_row).collect()
}

/// A new API key for the organization named `org_name`.
///
/// # Errors
/// [`ServerError::NotFound`] for an unknown organization, [`ServerError::BadRequest`] for an
/// unusable key name, [`ServerError::Database`] when the database fails.
pub async fn create_key(db: &Db, org_name: &str, key_name: &str) -> Result<(ApiKeyInfo, PlainKey)> {
    check_name("key", key_name)?;
    let org = find_org(db, org_name).await?;
    let mut conn = db.pool().acquire().await.map_err(ServerError::db("acquire"))?;
    insert_key(&mut conn, &org.id, key_name).await
}

/// The keys of the organization named `org_name`, oldest first, revoked ones included.
///
/// # Errors
/// [`ServerError::NotFound`] for an unknown organization, [`ServerError::Database`] when the
/// database fails.
pub async fn list_keys(db: &Db, org_name: &str) -> Result<Vec<ApiKeyInfo>> {
    let org = find_org(db, org_name).await?;
    let rows = sqlx::query(
        "SELECT id, organization_id, name, prefix, created_at, revoked_at FROM api_keys \
         WHERE organization_id = $1 ORDER BY created_at, id",
    )
    .bind(&org.id)
    .fetch_all(db.pool())
    .await
    .map_err(ServerError::db("list api keys"))?;
    rows.iter().map(ApiKeyInfo::from_row).collect()
}

/// Revokes the key of `org_name` whose id or listed prefix is `key_id_or_prefix`; a revoked
/// key stays listed and answers 401 from then on. Revoking twice keeps the first time.
///
/// # Errors
/// [`ServerError::NotFound`] when no key of that organization matches,
/// [`ServerError::Conflict`] when a prefix matches several, [`ServerError::Database`] when
/// the database fails.
pub async fn revoke_key(db: &Db, org_name: &str, key_id_or_prefix: &str) -> Result<ApiKeyInfo> {
    let keys = list_keys(db, org_name).await?;
    let matching: Vec<&ApiKeyInfo> =
        keys.iter().filter(|k| k.id == key_id_or_prefix || k.prefix == key_id_or_prefix).collect();
    let key = match matching.as_slice() {
        [] => return Err(ServerError::NotFound { kind: "api key", id: key_id_or_prefix.to_string() }),
        [one] => *one,
        _ => {
            return Err(ServerError::Conflict(format!(
                "{} keys start with {key_id_or_prefix:?}: revoke by id",
                matching.len()
            )));
        }
    };
    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND organization_id = $3 AND revoked_at IS NULL")
        .bind(now())
        .bind(&key.id)
        .bind(&key.organization_id)
        .execute(db.pool())
        .await
        .map_err(ServerError::db("revoke api key"))?;
    list_keys(db, org_name)
        .await?
        .into_iter()
        .find(|k| k.id == key.id)
        .ok_or_else(|| ServerError::NotFound { kind: "api key", id: key_id_or_prefix.to_string() })
}

/// The organization whose live key `key` is, or `None` for an unknown or revoked key.
///
/// # Errors
/// [`ServerError::Database`] when the database fails.
pub async fn authenticate(db: &Db, key: &str) -> Result<Option<Org>> {
    let hash = hash_key(key);
    let row = sqlx::query(
        "SELECT k.hash AS hash, k.revoked_at AS revoked_at, o.id AS id, o.name AS name, \
         o.created_at AS created_at, o.allow_remote AS allow_remote \
         FROM api_keys k JOIN organizations o ON o.id = k.organization_id WHERE k.hash = $1",
    )
    .bind(&hash)
    .fetch_optional(db.pool())
    .await
    .map_err(ServerError::db("authenticate"))?;
    let Some(row) = row else { return Ok(None) };
    let stored: String = row.try_get("hash").map_err(ServerError::db("decode api key"))?;
    let revoked: Option<i64> = row.try_get("revoked_at").map_err(ServerError::db("decode api key"))?;
    let same: bool = stored.as_bytes().ct_eq(hash.as_bytes()).into();
    if !same || revoked.is_some() {
        return Ok(None);
    }
    Org::from_row(&row).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_key_matches_the_standard_vector() {
        // FIPS 180-2 test vector: sha256("abc").
        assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("organization", "acme-corp_1").is_ok());
        for bad in ["", " acme", "a/b", "../x", &"x".repeat(65)] {
            assert!(check_name("organization", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let k = PlainKey("dck_ABCDEFGHsecretsecretsecretsecret".into());
        assert!(!format!("{k:?}").contains("secret"));
    }
}
