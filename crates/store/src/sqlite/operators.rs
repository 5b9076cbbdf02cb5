//! [`OperatorStore`] for SQLite: rows in, rows out, no rule.

use chrono::{DateTime, Utc};
use kanki_operators::store::{OperatorStore, StorageError, StorageResult};
use kanki_operators::{NewOperator, Operator, Roles, Session, Token};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteBackend, from_ts, ts};
use crate::StoreError;

fn storage(e: StoreError) -> StorageError {
    match e {
        StoreError::NotFound => StorageError::NotFound,
        other => StorageError::Backend(other.to_string()),
    }
}

fn sql(e: rusqlite::Error) -> StorageError {
    match e {
        rusqlite::Error::SqliteFailure(f, ref m)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StorageError::Conflict(m.clone().unwrap_or_else(|| "already exists".into()))
        }
        other => storage(other.into()),
    }
}

fn conversion(col: usize, e: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, e.into())
}

fn hash32(col: usize, v: Vec<u8>) -> rusqlite::Result<[u8; 32]> {
    v.try_into()
        .map_err(|_| conversion(col, "a stored hash is not 32 bytes".into()))
}

const OPERATOR_COLUMNS: &str =
    "id, name, kind, roles, disabled, password_hash, totp_secret, created_at, updated_at";

fn operator_from_row(r: &Row) -> rusqlite::Result<Operator> {
    let kind: String = r.get(2)?;
    Ok(Operator {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: kind.parse().map_err(|e| conversion(2, e))?,
        roles: Roles::from_bits(r.get(3)?),
        disabled: r.get(4)?,
        password_hash: r.get(5)?,
        totp_secret: r.get(6)?,
        created_at: from_ts(r.get(7)?),
        updated_at: from_ts(r.get(8)?),
    })
}

fn operator_where(
    c: &Connection,
    clause: &str,
    arg: &dyn rusqlite::ToSql,
) -> StorageResult<Option<Operator>> {
    c.prepare_cached(&format!(
        "SELECT {OPERATOR_COLUMNS} FROM operators WHERE {clause}"
    ))
    .map_err(sql)?
    .query_row([arg], operator_from_row)
    .optional()
    .map_err(sql)
}

const TOKEN_COLUMNS: &str = "t.id, t.name, t.operator_id, o.name, t.scope, t.expires_at, t.sources, t.secret_hash, t.created_at, t.last_used_at, t.revoked_at";

fn token_from_row(r: &Row) -> rusqlite::Result<Token> {
    let sources: String = r.get(6)?;
    Ok(Token {
        id: r.get(0)?,
        name: r.get(1)?,
        operator_id: r.get(2)?,
        operator: r.get(3)?,
        scope: Roles::from_bits(r.get(4)?),
        expires_at: r.get::<_, Option<i64>>(5)?.map(from_ts),
        sources: serde_json::from_str(&sources).map_err(|e| conversion(6, e.to_string()))?,
        secret_hash: hash32(7, r.get(7)?)?,
        created_at: from_ts(r.get(8)?),
        last_used_at: r.get::<_, Option<i64>>(9)?.map(from_ts),
        revoked_at: r.get::<_, Option<i64>>(10)?.map(from_ts),
    })
}

impl OperatorStore for SqliteBackend {
    fn add_operator(&self, new: &NewOperator, now: DateTime<Utc>) -> StorageResult<Operator> {
        let id = self
            .write(|c| {
                Ok(c.execute(
                    "INSERT INTO operators (name, kind, roles, password_hash, totp_secret, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![
                        new.name,
                        new.kind.as_str(),
                        new.roles.bits(),
                        new.password_hash,
                        new.totp_secret,
                        ts(now)
                    ],
                )
                .map(|_| c.last_insert_rowid()))
            })
            .map_err(storage)?
            .map_err(|e| match sql(e) {
                StorageError::Conflict(_) => {
                    StorageError::Conflict(format!("an operator named {:?} exists", new.name))
                }
                other => other,
            })?;
        self.read(|c| Ok(operator_where(c, "id = ?1", &id)))
            .map_err(storage)??
            .ok_or(StorageError::NotFound)
    }

    fn operators(&self) -> StorageResult<Vec<Operator>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {OPERATOR_COLUMNS} FROM operators ORDER BY name"
            ))?
            .query_map([], operator_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .map_err(storage)
    }

    fn operator_named(&self, name: &str) -> StorageResult<Option<Operator>> {
        self.read(|c| Ok(operator_where(c, "name = ?1", &name)))
            .map_err(storage)?
    }

    fn update_operator(&self, op: &Operator, now: DateTime<Utc>) -> StorageResult<()> {
        let n = self
            .write(|c| {
                Ok(c.execute(
                    "UPDATE operators SET kind = ?2, roles = ?3, disabled = ?4, password_hash = ?5,
                     totp_secret = ?6, updated_at = ?7 WHERE id = ?1",
                    params![
                        op.id,
                        op.kind.as_str(),
                        op.roles.bits(),
                        op.disabled,
                        op.password_hash,
                        op.totp_secret,
                        ts(now)
                    ],
                )?)
            })
            .map_err(storage)?;
        if n == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    fn accept_totp_step(&self, operator_id: i64, step: u64) -> StorageResult<bool> {
        let step = i64::try_from(step).map_err(|e| StorageError::Backend(e.to_string()))?;
        let n = self
            .write(|c| {
                Ok(c.execute(
                    "UPDATE operators SET totp_last_step = ?2
                     WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                    params![operator_id, step],
                )?)
            })
            .map_err(storage)?;
        Ok(n == 1)
    }

    fn pseudonym_key(&self, fresh: &[u8; 32]) -> StorageResult<Vec<u8>> {
        self.write(|c| {
            c.execute(
                "INSERT OR IGNORE INTO installation_keys (name, key) VALUES ('pseudonym', ?1)",
                params![fresh.as_slice()],
            )?;
            Ok(c.query_row(
                "SELECT key FROM installation_keys WHERE name = 'pseudonym'",
                [],
                |r| r.get(0),
            )?)
        })
        .map_err(storage)
    }

    fn console_language(&self, operator_id: i64) -> StorageResult<Option<String>> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT console_language FROM operators WHERE id = ?1")?
                    .query_row([operator_id], |r| r.get::<_, Option<String>>(0))
                    .optional()?,
            )
        })
        .map(Option::flatten)
        .map_err(storage)
    }

    fn set_console_language(&self, operator_id: i64, language: &str) -> StorageResult<()> {
        let n = self
            .write(|c| {
                Ok(c.execute(
                    "UPDATE operators SET console_language = ?2 WHERE id = ?1",
                    params![operator_id, language],
                )?)
            })
            .map_err(storage)?;
        if n == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    fn add_token(&self, t: &Token) -> StorageResult<()> {
        let sources =
            serde_json::to_string(&t.sources).map_err(|e| StorageError::Backend(e.to_string()))?;
        self.write(|c| {
            c.execute(
                "INSERT INTO api_tokens (id, name, operator_id, scope, expires_at, sources, secret_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    t.id,
                    t.name,
                    t.operator_id,
                    t.scope.bits(),
                    t.expires_at.map(ts),
                    sources,
                    &t.secret_hash[..],
                    ts(t.created_at)
                ],
            )?;
            Ok(())
        })
        .map_err(storage)
    }

    fn tokens(&self) -> StorageResult<Vec<Token>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN operators o ON o.id = t.operator_id
                 ORDER BY t.created_at DESC, t.id"
            ))?
            .query_map([], token_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .map_err(storage)
    }

    fn revoke_token(&self, id: &str, now: DateTime<Utc>) -> StorageResult<bool> {
        self.write(|c| {
            Ok(c.execute(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, ts(now)],
            )? > 0)
        })
        .map_err(storage)
    }

    fn record_token_use(&self, used: &[(String, DateTime<Utc>)]) -> StorageResult<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "UPDATE api_tokens SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE id = ?1",
                )?;
                for (id, at) in used {
                    st.execute(params![id, ts(*at)])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .map_err(storage)
    }

    fn add_session(&self, s: &Session) -> StorageResult<()> {
        self.write(|c| {
            c.execute(
                "INSERT INTO operator_sessions (secret_hash, operator_id, csrf, created_at, last_seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    &s.secret_hash[..],
                    s.operator_id,
                    s.csrf,
                    ts(s.created_at),
                    ts(s.last_seen_at)
                ],
            )?;
            Ok(())
        })
        .map_err(storage)
    }

    fn sessions(&self) -> StorageResult<Vec<Session>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT secret_hash, operator_id, csrf, created_at, last_seen_at FROM operator_sessions",
            )?
            .query_map([], |r| {
                Ok(Session {
                    secret_hash: hash32(0, r.get(0)?)?,
                    operator_id: r.get(1)?,
                    csrf: r.get(2)?,
                    created_at: from_ts(r.get(3)?),
                    last_seen_at: from_ts(r.get(4)?),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .map_err(storage)
    }

    fn record_session_use(&self, seen: &[([u8; 32], DateTime<Utc>)]) -> StorageResult<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "UPDATE operator_sessions SET last_seen_at = max(last_seen_at, ?2) WHERE secret_hash = ?1",
                )?;
                for (h, at) in seen {
                    st.execute(params![&h[..], ts(*at)])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .map_err(storage)
    }

    fn end_session(&self, secret_hash: &[u8; 32]) -> StorageResult<bool> {
        self.write(|c| {
            Ok(c.execute(
                "DELETE FROM operator_sessions WHERE secret_hash = ?1",
                [&secret_hash[..]],
            )? > 0)
        })
        .map_err(storage)
    }

    fn end_sessions_of(&self, operator_id: i64) -> StorageResult<u64> {
        self.write(|c| {
            Ok(c.execute(
                "DELETE FROM operator_sessions WHERE operator_id = ?1",
                [operator_id],
            )? as u64)
        })
        .map_err(storage)
    }

    fn end_stale_sessions(
        &self,
        created_before: DateTime<Utc>,
        seen_before: DateTime<Utc>,
    ) -> StorageResult<u64> {
        self.write(|c| {
            Ok(c.execute(
                "DELETE FROM operator_sessions WHERE created_at < ?1 OR last_seen_at < ?2",
                params![ts(created_before), ts(seen_before)],
            )? as u64)
        })
        .map_err(storage)
    }
}
