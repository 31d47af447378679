//! API keys as stored: a name, the public prefix and the SHA-256 hash of the
//! key, never the key itself.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{on_pool, Store, StoreError};

/// An API key as `kadi keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ApiKey {
    /// Identifier, used to revoke the key.
    pub id: i64,
    /// What the key is for, as given at creation.
    pub name: String,
    /// The start of the key, enough to recognise it and useless to guess it.
    pub prefix: String,
    /// When the key was created.
    pub created_at: DateTime<Utc>,
    /// When the key was revoked; `None` while it is valid.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A stored key that shares its prefix with a presented one: what the check
/// compares against.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredKeyHash {
    /// Identifier of the key.
    pub id: i64,
    /// Hex SHA-256 of the key.
    pub key_hash: String,
    /// When the key was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

const KEY_COLUMNS: &str = "id, name, prefix, created_at, revoked_at";

impl Store {
    /// Stores a new key by its hash.
    pub async fn insert_api_key(
        &self,
        name: &str,
        prefix: &str,
        key_hash: &str,
    ) -> Result<ApiKey, StoreError> {
        let _guard = self.write_guard().await;
        let sql = format!(
            "INSERT INTO api_keys (name, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING {KEY_COLUMNS}"
        );
        let key = on_pool!(self, |pool| {
            sqlx::query_as::<_, ApiKey>(&sql)
                .bind(name)
                .bind(prefix)
                .bind(key_hash)
                .bind(Utc::now())
                .fetch_one(pool)
                .await?
        });
        Ok(key)
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id");
        let keys = on_pool!(self, |pool| {
            sqlx::query_as::<_, ApiKey>(&sql).fetch_all(pool).await?
        });
        Ok(keys)
    }

    /// Revokes a key; revoking it again keeps the first revocation time.
    /// `None` when no key has this id.
    pub async fn revoke_api_key(&self, id: i64) -> Result<Option<ApiKey>, StoreError> {
        let _guard = self.write_guard().await;
        let sql = format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 \
             RETURNING {KEY_COLUMNS}"
        );
        let key = on_pool!(self, |pool| {
            sqlx::query_as::<_, ApiKey>(&sql)
                .bind(Utc::now())
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(key)
    }

    /// The stored keys whose prefix is `prefix`, revoked ones included, so
    /// that checking a revoked key costs the same as checking a valid one.
    pub async fn api_key_hashes(&self, prefix: &str) -> Result<Vec<StoredKeyHash>, StoreError> {
        let sql = "SELECT id, key_hash, revoked_at FROM api_keys WHERE prefix = $1";
        let keys = on_pool!(self, |pool| {
            sqlx::query_as::<_, StoredKeyHash>(sql)
                .bind(prefix)
                .fetch_all(pool)
                .await?
        });
        Ok(keys)
    }
}
