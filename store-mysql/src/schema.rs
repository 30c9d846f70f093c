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
/// - `2`: a nullable `principal VARBINARY(255)` column (the principal's
///   UTF-8 bytes, `NULL` for none) and an index `principal` on it. A table
///   recorded at version 1 is migrated when a store is built on it.
pub const LAYOUT_VERSION: u32 = 2;

/// What a registry row's version means to this crate.
const LAYOUT: Layout = Layout::new(BACKEND, "session-store-mysql", LAYOUT_VERSION as i64);

/// The registry: one row per session table of the database, with the layout
/// version it was created with. Its name holds `__`, which a namespace may
/// not, so no namespace can ever collide with it.
pub const REGISTRY: &str = "session_store__tables";

/// The rule for namespace tables: [`Identifiers`], at most 64 characters
/// (MySQL's limit).
pub(crate) const NAMES: Identifiers = Identifiers::new(BACKEND, 64);

/// `ER_DUP_FIELDNAME`: the column exists already.
const DUPLICATE_COLUMN: u16 = 1060;

/// `ER_DUP_KEYNAME`: the index exists already.
const DUPLICATE_KEY_NAME: u16 = 1061;

/// Run one idempotent `ALTER TABLE`: another builder that ran it first
/// (the column or index exists by now) is success.
async fn alter(conn: &mut Conn, statement: String) -> Result<()> {
    match conn.query_drop(statement).await {
        Err(mysql_async::Error::Server(e))
            if e.code == DUPLICATE_COLUMN || e.code == DUPLICATE_KEY_NAME =>
        {
            Ok(())
        }
        done => done.map_err(backend),
    }
}

/// Give `table`, if it exists, the `principal` column and index of layout
/// 2, each only if missing (read from `information_schema`, since MySQL,
/// unlike MariaDB, has no `ADD COLUMN IF NOT EXISTS`). Two builders at once
/// are safe: the second `ALTER` waits for the first and then finds its
/// column or index there, which [`alter`] takes for success. The column is
/// added at the end of the row without a default, which InnoDB does in
/// place without rewriting rows (`INSTANT` on MySQL 8.0.12+ and MariaDB
/// 10.3+); the index is built online, writers going on meanwhile.
async fn add_principal(conn: &mut Conn, table: &str) -> Result<()> {
    let found: Option<(u8, u8, u8)> = conn
        .exec_first(
            "SELECT \
             EXISTS (SELECT 1 FROM information_schema.tables \
                     WHERE table_schema = DATABASE() AND table_name = ?), \
             EXISTS (SELECT 1 FROM information_schema.columns \
                     WHERE table_schema = DATABASE() AND table_name = ? \
                     AND column_name = 'principal'), \
             EXISTS (SELECT 1 FROM information_schema.statistics \
                     WHERE table_schema = DATABASE() AND table_name = ? \
                     AND index_name = 'principal')",
            (table, table, table),
        )
        .await
        .map_err(backend)?;
    let Some((1, column, index)) = found else {
        // No such table (dropped by hand): it is created afresh.
        return Ok(());
    };
    if column == 0 {
        alter(
            conn,
            format!("ALTER TABLE `{table}` ADD COLUMN principal VARBINARY(255) NULL"),
        )
        .await?;
    }
    if index == 0 {
        alter(
            conn,
            format!("ALTER TABLE `{table}` ADD KEY principal (principal)"),
        )
        .await?;
    }
    Ok(())
}

/// Create the registry and `table` (with its indexes) if missing, migrate a
/// table recorded at layout 1, and check the layout version recorded for
/// `table`. Idempotent; safe to run from several processes at once (every
/// statement is `IF NOT EXISTS`, `INSERT IGNORE`, an `ALTER` that is only
/// run when what it adds is missing and takes "it exists" for success, or
/// an `UPDATE` of the registry from 1 to 2).
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
    let recorded = match recorded {
        Some(1) => {
            add_principal(conn, table).await?;
            conn.exec_drop(
                format!("UPDATE `{REGISTRY}` SET layout = ? WHERE name = ? AND layout = 1"),
                (LAYOUT_VERSION, table),
            )
            .await
            .map_err(backend)?;
            Some(LAYOUT_VERSION)
        }
        other => other,
    };
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
            principal  VARBINARY(255)  NULL,
            UNIQUE KEY `key` (`key`),
            KEY expires_at (expires_at),
            KEY principal (principal)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    ))
    .await
    .map_err(backend)?;
    if recorded.is_none() {
        // A table that was there unrecorded may be a layout-1 build's that
        // stopped before recording it (the probe above accepted it).
        add_principal(conn, table).await?;
    }
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
    /// `key, now` → `data, created_at, expires_at, version, principal` of
    /// the live row.
    pub(crate) load: String,
    /// `key, data, created_at, expires_at, version, principal, now, now,
    /// now, now, now`: inserts (1 affected row), replaces a row that is
    /// expired at `now` (2), or leaves a live row alone (0). `expires_at` is
    /// assigned last: MySQL evaluates the assignments left to right, and the
    /// conditions must see the old expiry.
    pub(crate) create: String,
    /// `data, created_at, expires_at, new version, principal, key, expected
    /// version, now`: 1 affected row if applied (the version always
    /// changes, so "changed" and "matched" agree).
    pub(crate) update: String,
    /// `key, expected version, now`: an update to an expiry that is not in
    /// the future removes the live row of the expected version.
    pub(crate) update_gone: String,
    /// `key` → `expires_at, version`, whatever they hold: why a write
    /// changed nothing (never followed by a write that depends on it).
    pub(crate) row_state: String,
    /// `key, data, created_at, expires_at, version, principal`: upsert.
    pub(crate) save: String,
    /// `expires_at, key, now`: 1 affected row if the live row's expiry
    /// changed. The principal (and its index) is not touched.
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
    /// `now, limit` → `key, data, created_at, expires_at, version,
    /// principal` of the first `limit` live rows in key order (walks the
    /// `key` index).
    pub(crate) list_first: String,
    /// `key, now, limit`: as [`list_first`](Self::list_first), of the rows
    /// whose key sorts after `key`.
    pub(crate) list_after: String,
    /// `now, batch size`: deletes up to that many expired rows, oldest
    /// expiry first, through the expiry index.
    pub(crate) delete_expired: String,
    /// `principal, now` → `key, data, created_at, expires_at, version,
    /// principal` of the principal's live rows (through the principal
    /// index).
    pub(crate) sessions_of: String,
    /// `principal, now, key to keep or NULL`: deletes the principal's live
    /// rows but that key (through the principal index); the affected rows
    /// are how many were destroyed.
    pub(crate) destroy_all_of: String,
    /// `principal` → how many rows name the principal, expired ones not yet
    /// reaped included (counted in the principal index).
    pub(crate) index_len: String,
}

impl Statements {
    /// The statements for `table`, which must have passed [`NAMES`].
    pub(crate) fn new(table: &str) -> Self {
        let t = format!("`{table}`");
        let columns = "`key`, data, created_at, expires_at, version, principal";
        let upsert = format!(
            "INSERT INTO {t} ({columns}) \
             VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE "
        );
        Self {
            load: format!(
                "SELECT data, created_at, expires_at, version, principal FROM {t} \
                 WHERE `key` = ? AND expires_at > ?"
            ),
            create: format!(
                "{upsert}\
                 data = IF(expires_at <= ?, VALUES(data), data), \
                 created_at = IF(expires_at <= ?, VALUES(created_at), created_at), \
                 version = IF(expires_at <= ?, VALUES(version), version), \
                 principal = IF(expires_at <= ?, VALUES(principal), principal), \
                 expires_at = IF(expires_at <= ?, VALUES(expires_at), expires_at)"
            ),
            update: format!(
                "UPDATE {t} SET data = ?, created_at = ?, expires_at = ?, version = ?, \
                 principal = ? WHERE `key` = ? AND version = ? AND expires_at > ?"
            ),
            update_gone: format!(
                "DELETE FROM {t} WHERE `key` = ? AND version = ? AND expires_at > ?"
            ),
            row_state: format!("SELECT expires_at, version FROM {t} WHERE `key` = ?"),
            save: format!(
                "{upsert}data = VALUES(data), created_at = VALUES(created_at), \
                 expires_at = VALUES(expires_at), version = VALUES(version), \
                 principal = VALUES(principal)"
            ),
            touch: format!("UPDATE {t} SET expires_at = ? WHERE `key` = ? AND expires_at > ?"),
            destroy: format!("DELETE FROM {t} WHERE `key` = ?"),
            destroy_expired: format!("DELETE FROM {t} WHERE `key` = ? AND expires_at <= ?"),
            clear: format!("TRUNCATE TABLE {t}"),
            clear_rows: format!("DELETE FROM {t}"),
            len: format!("SELECT COUNT(*) FROM {t} WHERE expires_at > ?"),
            list_first: format!(
                "SELECT {columns} FROM {t} \
                 WHERE expires_at > ? ORDER BY `key` LIMIT ?"
            ),
            list_after: format!(
                "SELECT {columns} FROM {t} \
                 WHERE `key` > ? AND expires_at > ? ORDER BY `key` LIMIT ?"
            ),
            delete_expired: format!(
                "DELETE FROM {t} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?"
            ),
            sessions_of: format!(
                "SELECT {columns} FROM {t} WHERE principal = ? AND expires_at > ?"
            ),
            destroy_all_of: format!(
                "DELETE FROM {t} WHERE principal = ? AND expires_at > ? AND NOT (`key` <=> ?)"
            ),
            index_len: format!("SELECT COUNT(*) FROM {t} WHERE principal = ?"),
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

    /// `sessions_of`, `destroy_all_of` (with and without a key to keep) and
    /// `index_len` find a principal's rows through the `principal` index,
    /// never by scanning the table: the `EXPLAIN` of the statements the
    /// store runs, on a table of 20,000 rows (2,000 with one of 50
    /// principals, one in 50 expired) after `ANALYZE TABLE`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::unwrap_used, clippy::panic, reason = "test")]
    async fn a_principal_s_sessions_are_found_through_the_principal_index() {
        use mysql_async::{Params, Value};
        use session_conformance::env::MYSQL;

        if MYSQL.skip_reason().is_some() {
            return;
        }
        let url = MYSQL.url();
        let mut conn = Conn::new(mysql_async::Opts::from_url(&url).unwrap())
            .await
            .unwrap_or_else(|e| MYSQL.unreachable(&url, &e));
        let table = session_conformance::unique_namespace();
        prepare(&mut conn, &table).await.unwrap();
        // 20,000 rows from a cross join of digits: portable to MySQL and
        // MariaDB (no sequence engine, no recursion limit).
        let digits = "(SELECT 0 n UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
                      UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL \
                      SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
        let filled = conn
            .query_drop(format!(
                "INSERT INTO `{table}` (`key`, data, created_at, expires_at, version, principal) \
                 SELECT UNHEX(SHA2(i, 256)), '{{}}', 0, \
                 IF(i % 50 = 0, 1000 + i, 4000000000000 + i), 0, \
                 IF(i % 10 = 0, CONCAT('user:', i % 500), NULL) FROM \
                 (SELECT a.n + 10 * b.n + 100 * c.n + 1000 * d.n + 10000 * e.n AS i \
                  FROM {digits} a, {digits} b, {digits} c, {digits} d, {digits} e \
                  WHERE e.n < 2) s; ANALYZE TABLE `{table}`;"
            ))
            .await;
        let sql = Statements::new(&table);
        let (who, now) = (Value::from("user:10"), Value::from(2_000_000_000_000_i64));
        let mut plans = Vec::new();
        if filled.is_ok() {
            for (what, statement, params) in [
                (
                    "sessions_of",
                    &sql.sessions_of,
                    vec![who.clone(), now.clone()],
                ),
                (
                    "destroy_all_of",
                    &sql.destroy_all_of,
                    vec![who.clone(), now.clone(), Value::Bytes(vec![0x80; 32])],
                ),
                (
                    "destroy_all_of",
                    &sql.destroy_all_of,
                    vec![who.clone(), now.clone(), Value::NULL],
                ),
                ("index_len", &sql.index_len, vec![who.clone()]),
            ] {
                let plan: Vec<Row> = conn
                    .exec(format!("EXPLAIN {statement}"), Params::Positional(params))
                    .await
                    .unwrap();
                plans.push((what, plan));
            }
        }
        conn.query_drop(format!(
            "DROP TABLE `{table}`; DELETE FROM `{REGISTRY}` WHERE name = '{table}'"
        ))
        .await
        .unwrap();
        filled.unwrap();
        // One cell of a plan's first row, by column name.
        let cell = |plan: &[Row], name: &str| {
            plan.first().and_then(|row| {
                let at = row
                    .columns_ref()
                    .iter()
                    .position(|c| c.name_str() == name)?;
                row.get::<Option<String>, usize>(at).flatten()
            })
        };
        for (what, plan) in &plans {
            let text = ["type", "possible_keys", "key", "rows", "Extra"]
                .map(|name| format!("{name}={}", cell(plan, name).unwrap_or_default()))
                .join(" ");
            println!("{what}: {text}");
            assert_eq!(
                cell(plan, "key").as_deref(),
                Some("principal"),
                "{what}: {text}"
            );
            assert_ne!(
                cell(plan, "type").as_deref(),
                Some("ALL"),
                "{what} scans: {text}"
            );
        }
    }
}
