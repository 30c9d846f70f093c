//! The table layout, its version marker, and the SQL text of every
//! statement (built once per table, from a validated identifier).

use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Row};
use session_core::sql::{Identifiers, Layout};
use session_core::{Error, Result};

use crate::{BACKEND, backend};

/// The table layout this crate writes, recorded per table in the registry
/// table [`REGISTRY`]; a table recorded with any other layout is refused
/// with [`Error::Config`] when the store is built.
///
/// History:
/// - `1`: `(id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, key BINARY(32)
///   UNIQUE, data LONGTEXT utf8mb4, created_at BIGINT, expires_at BIGINT,
///   version BIGINT UNSIGNED, INDEX (expires_at))`, InnoDB; times in
///   milliseconds since the Unix epoch.
pub const LAYOUT_VERSION: u32 = 1;

/// What a registry row's version means to this crate.
const LAYOUT: Layout = Layout::new(BACKEND, "session-store-mysql", LAYOUT_VERSION as i64);

/// The registry: one row per session table of the database, with the layout
/// version it was created with. Its name holds `__`, which a namespace may
/// not, so no namespace can ever collide with it.
pub const REGISTRY: &str = "session_store__tables";

/// The rule for namespace tables: [`Identifiers`], at most 64 characters
/// (MySQL's limit).
pub(crate) const NAMES: Identifiers = Identifiers::new(BACKEND, 64);

/// Create the registry and `table` (with its indexes) if missing, and check
/// the layout version recorded for `table`. Idempotent; safe to run from
/// several processes at once (every statement is `IF NOT EXISTS` or
/// `INSERT IGNORE`).
pub(crate) async fn prepare(conn: &mut Conn, table: &str) -> Result<()> {
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS `{REGISTRY}` (
            name   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
            layout INT UNSIGNED NOT NULL
        ) ENGINE=InnoDB"
    ))
    .await
    .map_err(backend)?;
    let recorded: Option<u32> = conn
        .exec_first(
            format!("SELECT layout FROM `{REGISTRY}` WHERE name = ?"),
            (table,),
        )
        .await
        .map_err(backend)?;
    let name = format!("`{table}`");
    if !LAYOUT.check(&name, recorded.map(i64::from))? {
        let exists: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = ?",
                (table,),
            )
            .await
            .map_err(backend)?;
        if exists.is_some() {
            // Not recorded: either a build stopped between creating the
            // table and recording it, or the table is someone else's.
            let probe = conn
                .query_drop(format!(
                    "SELECT id, `key`, data, created_at, expires_at, version \
                     FROM `{table}` LIMIT 0"
                ))
                .await;
            if probe.is_err() {
                return Err(LAYOUT.foreign(&name));
            }
        }
    }
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS `{table}` (
            id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            `key`      BINARY(32)      NOT NULL,
            data       LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
            created_at BIGINT          NOT NULL,
            expires_at BIGINT          NOT NULL,
            version    BIGINT UNSIGNED NOT NULL,
            UNIQUE KEY `key` (`key`),
            KEY expires_at (expires_at)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    ))
    .await
    .map_err(backend)?;
    conn.exec_drop(
        format!("INSERT IGNORE INTO `{REGISTRY}` (name, layout) VALUES (?, ?)"),
        (table, LAYOUT_VERSION),
    )
    .await
    .map_err(backend)?;
    Ok(())
}

/// The server's `max_allowed_packet`: the largest statement it accepts.
pub(crate) async fn max_allowed_packet(conn: &mut Conn) -> Result<u64> {
    let row: Option<Row> = conn
        .query_first("SELECT @@max_allowed_packet")
        .await
        .map_err(backend)?;
    let value = row
        .and_then(|mut row| row.take_opt::<u64, usize>(0))
        .and_then(std::result::Result::ok);
    value.ok_or_else(|| {
        Error::backend(
            BACKEND,
            "SELECT @@max_allowed_packet did not return an integer",
        )
    })
}

/// The SQL of every statement on one table. `now` is always a parameter
/// (the process clock, in milliseconds), never the server's `NOW()`.
#[derive(Debug)]
pub(crate) struct Statements {
    /// `key, now` → `data, created_at, expires_at, version` of the live row.
    pub(crate) load: String,
    /// `key, data, created_at, expires_at, version, now, now, now, now`:
    /// inserts (1 affected row), replaces a row that is expired at `now`
    /// (2), or leaves a live row alone (0). `expires_at` is assigned last:
    /// MySQL evaluates the assignments left to right, and the conditions
    /// must see the old expiry.
    pub(crate) create: String,
    /// `data, created_at, expires_at, new version, key, expected version,
    /// now`: 1 affected row if applied (the version always changes, so
    /// "changed" and "matched" agree).
    pub(crate) update: String,
    /// `key, expected version, now`: an update to an expiry that is not in
    /// the future removes the live row of the expected version.
    pub(crate) update_gone: String,
    /// `key` → `expires_at, version`, whatever they hold: why a write
    /// changed nothing (never followed by a write that depends on it).
    pub(crate) row_state: String,
    /// `key, data, created_at, expires_at, version`: upsert.
    pub(crate) save: String,
    /// `expires_at, key, now`: 1 affected row if the live row's expiry
    /// changed.
    pub(crate) touch: String,
    /// `key`.
    pub(crate) destroy: String,
    /// `key, now`: removes the row under `key` only if it is expired.
    pub(crate) destroy_expired: String,
    /// No parameters: empties the table at once, whatever its size (DDL:
    /// needs the DROP privilege on the table).
    pub(crate) clear: String,
    /// No parameters: the row-by-row fallback of [`clear`](Self::clear)
    /// where TRUNCATE is not allowed.
    pub(crate) clear_rows: String,
    /// `now` → count of live rows (a range of the expiry index).
    pub(crate) len: String,
    /// `now, limit` → `key, data, created_at, expires_at, version` of the
    /// first `limit` live rows in key order (walks the `key` index).
    pub(crate) list_first: String,
    /// `key, now, limit`: as [`list_first`](Self::list_first), of the rows
    /// whose key sorts after `key`.
    pub(crate) list_after: String,
    /// `now, batch size`: deletes up to that many expired rows, oldest
    /// expiry first, through the expiry index.
    pub(crate) delete_expired: String,
}

impl Statements {
    /// The statements for `table`, which must have passed [`NAMES`].
    pub(crate) fn new(table: &str) -> Self {
        let t = format!("`{table}`");
        let upsert = format!(
            "INSERT INTO {t} (`key`, data, created_at, expires_at, version) \
             VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE "
        );
        Self {
            load: format!(
                "SELECT data, created_at, expires_at, version FROM {t} \
                 WHERE `key` = ? AND expires_at > ?"
            ),
            create: format!(
                "{upsert}\
                 data = IF(expires_at <= ?, VALUES(data), data), \
                 created_at = IF(expires_at <= ?, VALUES(created_at), created_at), \
                 version = IF(expires_at <= ?, VALUES(version), version), \
                 expires_at = IF(expires_at <= ?, VALUES(expires_at), expires_at)"
            ),
            update: format!(
                "UPDATE {t} SET data = ?, created_at = ?, expires_at = ?, version = ? \
                 WHERE `key` = ? AND version = ? AND expires_at > ?"
            ),
            update_gone: format!(
                "DELETE FROM {t} WHERE `key` = ? AND version = ? AND expires_at > ?"
            ),
            row_state: format!("SELECT expires_at, version FROM {t} WHERE `key` = ?"),
            save: format!(
                "{upsert}data = VALUES(data), created_at = VALUES(created_at), \
                 expires_at = VALUES(expires_at), version = VALUES(version)"
            ),
            touch: format!("UPDATE {t} SET expires_at = ? WHERE `key` = ? AND expires_at > ?"),
            destroy: format!("DELETE FROM {t} WHERE `key` = ?"),
            destroy_expired: format!("DELETE FROM {t} WHERE `key` = ? AND expires_at <= ?"),
            clear: format!("TRUNCATE TABLE {t}"),
            clear_rows: format!("DELETE FROM {t}"),
            len: format!("SELECT COUNT(*) FROM {t} WHERE expires_at > ?"),
            list_first: format!(
                "SELECT `key`, data, created_at, expires_at, version FROM {t} \
                 WHERE expires_at > ? ORDER BY `key` LIMIT ?"
            ),
            list_after: format!(
                "SELECT `key`, data, created_at, expires_at, version FROM {t} \
                 WHERE `key` > ? AND expires_at > ? ORDER BY `key` LIMIT ?"
            ),
            delete_expired: format!(
                "DELETE FROM {t} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_identifiers_of_at_most_64_characters() {
        for good in ["sessions", "pg_x", "sqlite_x", &"a".repeat(64)] {
            assert!(NAMES.check("table", good).is_ok(), "{good:?} refused");
        }
        for bad in ["a`b", "x; DROP TABLE y", REGISTRY, &"a".repeat(65)] {
            assert!(
                matches!(NAMES.check("table", bad), Err(Error::Config { .. })),
                "{bad:?} accepted"
            );
        }
    }
}
