//! The table layout, its version, its migrations, and the SQL text of every
//! statement (built once per table, from a validated identifier).

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior};
use session_core::sql::Identifiers;
use session_core::{Error, Result};

use crate::{BACKEND, backend};

/// The layout version this crate writes, kept in the database's
/// `PRAGMA user_version`; opening a file at an older version migrates it.
///
/// History:
/// - `1`: one table per namespace `(key TEXT PRIMARY KEY, data TEXT,
///   created_at INTEGER, expires_at INTEGER, version INTEGER)` with an index
///   on `expires_at`; the registry table lists every namespace so that a
///   migration can walk them all.
/// - `2`: a nullable `principal TEXT` column (the record's principal, `NULL`
///   for none) and a partial index `<table>__principal` on it `WHERE
///   principal IS NOT NULL`, so that anonymous sessions stay out of it.
///   Opening a version-1 file adds both to every table of the registry.
pub const SCHEMA_VERSION: i64 = 2;

/// Lists every namespace table of the file. Its name holds `__`, which a
/// namespace may not, so no namespace can ever collide with it.
pub(crate) const REGISTRY: &str = "session_store__tables";

/// One migration: brings every namespace table listed in the registry from
/// version `n` to `n + 1` (index `n - 1`), inside the open transaction.
type Migration = fn(&Connection, &[String]) -> rusqlite::Result<()>;

/// `MIGRATIONS[n - 1]` migrates a file at version `n` to `n + 1`; a layout
/// change appends its step here and bumps [`SCHEMA_VERSION`].
const MIGRATIONS: &[Migration] = &[add_principal];

/// The column and index version 2 adds to a table (the same text serves the
/// migration and the creation of a fresh table).
fn principal_index(table: &str) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS \"{table}__principal\" ON \"{table}\" (principal) \
         WHERE principal IS NOT NULL"
    )
}

/// Version 1 → 2: add the `principal` column and its partial index to every
/// table of the registry. A registered table that no longer exists (dropped
/// by hand) is skipped: opening its namespace creates it afresh. Adding a
/// nullable column without a default rewrites no row, and the partial index
/// starts empty (every existing row has no principal): the step costs one
/// read of each table, whatever its size, inside the opener's transaction.
fn add_principal(tx: &Connection, tables: &[String]) -> rusqlite::Result<()> {
    for table in tables {
        let (exists, has_column): (bool, bool) = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1), \
             EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = 'principal')",
            [table],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        // A name the store registered passed NAMES; anything else was not
        // written by it and is no table of its own to migrate.
        if !exists || NAMES.check("table", table).is_err() {
            continue;
        }
        if !has_column {
            tx.execute_batch(&format!(
                "ALTER TABLE \"{table}\" ADD COLUMN principal TEXT"
            ))?;
        }
        tx.execute_batch(&principal_index(table))?;
    }
    Ok(())
}

/// The rule for namespace tables: [`Identifiers`], at most 63 characters,
/// and not starting with `sqlite_` (reserved by SQLite).
pub(crate) const NAMES: Identifiers = Identifiers::new(BACKEND, 63).reserving("sqlite_", "SQLite");

/// Bring the file to [`SCHEMA_VERSION`] and create `table` (and its index) if
/// needed, in one `IMMEDIATE` transaction so that concurrent openers
/// serialize.
pub(crate) fn prepare(conn: &mut Connection, table: &str) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(backend)?;
    let has_registry = tx
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [REGISTRY],
            |_| Ok(()),
        )
        .optional()
        .map_err(backend)?
        .is_some();
    if version > SCHEMA_VERSION {
        return Err(Error::config(
            BACKEND,
            format!(
                "the database's session schema is version {version}, newer than this \
                 crate's {SCHEMA_VERSION}: upgrade session-store-sqlite"
            ),
        ));
    }
    if version != 0 && !has_registry {
        return Err(Error::config(
            BACKEND,
            format!(
                "the database's user_version is {version} but it holds no session tables: \
                 the file belongs to another application; use a dedicated file"
            ),
        ));
    }
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {REGISTRY} (name TEXT PRIMARY KEY NOT NULL)"
    ))
    .map_err(backend)?;
    if version >= 1 {
        let tables = {
            let mut stmt = tx
                .prepare(&format!("SELECT name FROM {REGISTRY}"))
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?
        };
        for (from, migrate) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version - 1).unwrap_or(0))
        {
            migrate(&tx, &tables).map_err(|e| {
                Error::backend(
                    BACKEND,
                    MigrationError {
                        from: from + 1,
                        source: e,
                    },
                )
            })?;
        }
    }
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{table}\" (
            key        TEXT    PRIMARY KEY NOT NULL,
            data       TEXT    NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            version    INTEGER NOT NULL,
            principal  TEXT
        );
        CREATE INDEX IF NOT EXISTS \"{table}__expires_at\" ON \"{table}\" (expires_at);
        {};",
        principal_index(table)
    ))
    .map_err(backend)?;
    tx.execute(
        &format!("INSERT OR IGNORE INTO {REGISTRY} (name) VALUES (?1)"),
        [table],
    )
    .map_err(backend)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(backend)?;
    tx.commit().map_err(backend)
}

/// A migration step failed.
#[derive(Debug)]
struct MigrationError {
    from: usize,
    source: rusqlite::Error,
}

impl std::fmt::Display for MigrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "migrating the session schema from version {} failed",
            self.from
        )
    }
}

impl std::error::Error for MigrationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The SQL of every statement on one table. Parameters are always numbered;
/// `now` is passed in (the process clock), never taken from SQLite.
#[derive(Debug)]
pub(crate) struct Statements {
    /// `?1 key, ?2 now` → `data, created_at, expires_at, version,
    /// principal`.
    pub(crate) load: String,
    /// `?1 key, ?2 data, ?3 created_at, ?4 expires_at, ?5 version, ?6 now,
    /// ?7 principal`: inserts, or replaces a row that is expired at `now`;
    /// 1 change if it wrote.
    pub(crate) create: String,
    /// `?1 data, ?2 created_at, ?3 expires_at, ?4 new version, ?5 key,
    /// ?6 expected version, ?7 now, ?8 principal`: 1 change if applied.
    pub(crate) update: String,
    /// `?1 key` → `expires_at, version` of the row, whatever they hold:
    /// why a write changed nothing (never followed by a write).
    pub(crate) row_state: String,
    /// `?1 key, ?2 data, ?3 created_at, ?4 expires_at, ?5 version,
    /// ?6 principal`: upsert.
    pub(crate) save: String,
    /// `?1 expires_at, ?2 key, ?3 now`: 1 change if the row was live (an
    /// expiry that is not an integer never passes for live: text sorts
    /// after every number). The principal is not touched.
    pub(crate) touch: String,
    /// `?1 key`.
    pub(crate) destroy: String,
    /// No parameters.
    pub(crate) clear: String,
    /// `?1 now` → count of live rows (walks the expiry index), and the
    /// greatest key among them whose `expires_at` is not an integer
    /// (corrupt: text and blobs sort after every number), if any.
    pub(crate) len: String,
    /// `?1 now, ?2 limit` → `key, data, created_at, expires_at, version,
    /// principal` of the first `limit` live rows in key order (walks the
    /// key index).
    pub(crate) list_first: String,
    /// `?1 key, ?2 now, ?3 limit`: as [`list_first`](Self::list_first), of
    /// the rows whose key sorts after `key`.
    pub(crate) list_after: String,
    /// `?1 now, ?2 batch size`: deletes up to that many expired rows, found
    /// through the expiry index.
    pub(crate) delete_expired: String,
    /// `?1 principal, ?2 now` → `key, data, created_at, expires_at,
    /// version, principal` of the principal's live rows (walks the
    /// principal index).
    pub(crate) sessions_of: String,
    /// `?1 principal, ?2 now, ?3 key to keep or NULL`: deletes the
    /// principal's live rows but that key (through the principal index).
    /// A row of the principal whose expiry is not a number (written behind
    /// the store's back) sorts after every number and is deleted too: it
    /// cannot be proven ended, and "sign out everywhere" must not leave it.
    pub(crate) destroy_all_of: String,
    /// `?1 principal` → how many rows name the principal, expired ones not
    /// yet reaped included (counted in the principal index).
    pub(crate) index_len: String,
}

impl Statements {
    /// The statements for `table`, which must have passed [`NAMES`].
    pub(crate) fn new(table: &str) -> Self {
        let t = format!("\"{table}\"");
        let columns = "key, data, created_at, expires_at, version, principal";
        Self {
            load: format!(
                "SELECT data, created_at, expires_at, version, principal FROM {t} \
                 WHERE key = ?1 AND expires_at > ?2"
            ),
            create: format!(
                "INSERT INTO {t} ({columns}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?7) \
                 ON CONFLICT (key) DO UPDATE SET data = excluded.data, \
                 created_at = excluded.created_at, expires_at = excluded.expires_at, \
                 version = excluded.version, principal = excluded.principal \
                 WHERE {t}.expires_at <= ?6"
            ),
            update: format!(
                "UPDATE {t} SET data = ?1, created_at = ?2, expires_at = ?3, version = ?4, \
                 principal = ?8 \
                 WHERE key = ?5 AND version = ?6 AND expires_at > ?7 \
                 AND typeof(expires_at) = 'integer'"
            ),
            row_state: format!("SELECT expires_at, version FROM {t} WHERE key = ?1"),
            save: format!(
                "INSERT INTO {t} ({columns}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (key) DO UPDATE SET data = excluded.data, \
                 created_at = excluded.created_at, expires_at = excluded.expires_at, \
                 version = excluded.version, principal = excluded.principal"
            ),
            touch: format!(
                "UPDATE {t} SET expires_at = ?1 WHERE key = ?2 AND expires_at > ?3 \
                 AND typeof(expires_at) = 'integer'"
            ),
            destroy: format!("DELETE FROM {t} WHERE key = ?1"),
            clear: format!("DELETE FROM {t}"),
            len: format!(
                "SELECT count(*), max(CASE typeof(expires_at) WHEN 'integer' THEN NULL ELSE key END) \
                 FROM {t} WHERE expires_at > ?1"
            ),
            list_first: format!(
                "SELECT {columns} FROM {t} \
                 WHERE expires_at > ?1 ORDER BY key LIMIT ?2"
            ),
            list_after: format!(
                "SELECT {columns} FROM {t} \
                 WHERE key > ?1 AND expires_at > ?2 ORDER BY key LIMIT ?3"
            ),
            delete_expired: format!(
                "DELETE FROM {t} WHERE rowid IN \
                 (SELECT rowid FROM {t} WHERE expires_at <= ?1 LIMIT ?2)"
            ),
            sessions_of: format!(
                "SELECT {columns} FROM {t} WHERE principal = ?1 AND expires_at > ?2"
            ),
            destroy_all_of: format!(
                "DELETE FROM {t} WHERE principal = ?1 AND expires_at > ?2 AND key IS NOT ?3"
            ),
            index_len: format!("SELECT count(*) FROM {t} WHERE principal = ?1"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The steps (`detail` column) of `EXPLAIN QUERY PLAN statement`.
    #[allow(clippy::unwrap_used, reason = "test")]
    fn query_plan(
        conn: &Connection,
        statement: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Vec<String> {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
            .unwrap()
            .query_map(args, |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn table_names_are_identifiers_not_reserved_by_sqlite() {
        for good in ["sessions", "conf_0123abcd", &"a".repeat(63)] {
            NAMES.check("table", good).unwrap();
        }
        for bad in [
            "x; DROP TABLE y",
            "a__b",
            "sqlite_master",
            "SQLITE_x",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(NAMES.check("table", bad), Err(Error::Config { .. })),
                "{bad:?} accepted"
            );
        }
    }

    /// `delete_expired` finds expired rows through the expiry index, never
    /// by scanning the table: the plan of the statement the store runs.
    #[test]
    #[allow(clippy::unwrap_used, reason = "test")]
    fn delete_expired_uses_the_expiry_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        prepare(&mut conn, "plan").unwrap();
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'plan'")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let index = indexes
            .iter()
            .find(|n| n.contains("expires_at"))
            .unwrap_or_else(|| panic!("no expiry index among {indexes:?}"));
        let statement = Statements::new("plan").delete_expired;
        let plan = query_plan(&conn, &statement, &[&0_i64, &1000_i64]);
        assert!(
            plan.iter()
                .any(|step| step.contains(&format!("INDEX {index}"))),
            "the plan does not use {index}: {plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN plan")),
            "a table scan: {plan:?}"
        );
    }

    /// `list` walks the key index in key order, from the cursor on: no
    /// table scan by the expiry index and no sort for `ORDER BY key`, even
    /// once `ANALYZE` has told SQLite that most rows are live. The plans of
    /// both statements the store runs.
    #[test]
    #[allow(clippy::unwrap_used, reason = "test")]
    fn list_walks_the_key_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        prepare(&mut conn, "plan").unwrap();
        conn.execute_batch(
            "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 5000) \
             INSERT INTO plan (key, data, created_at, expires_at, version) \
             SELECT printf('%064x', n * 7919), '{}', 0, \
             CASE WHEN n % 50 = 0 THEN 1 ELSE 9000000000000 END, 0 FROM i; ANALYZE;",
        )
        .unwrap();
        // The index of `key TEXT PRIMARY KEY` in a rowid table.
        let index = "sqlite_autoindex_plan_1";
        let sql = Statements::new("plan");
        let plan =
            |statement: &str, args: &[&dyn rusqlite::ToSql]| query_plan(&conn, statement, args);
        let now = 1_000_i64;
        let first = plan(&sql.list_first, &[&now, &1000_i64]);
        let after = plan(&sql.list_after, &[&"00", &now, &1000_i64]);
        println!("list_first: {first:?}\nlist_after: {after:?}");
        for steps in [&first, &after] {
            assert!(
                steps
                    .iter()
                    .any(|step| step.contains(&format!("USING INDEX {index}"))),
                "the plan does not walk {index}: {steps:?}"
            );
            assert!(
                !steps.iter().any(|step| step.contains("TEMP B-TREE")),
                "a sort: {steps:?}"
            );
        }
        assert!(
            after
                .iter()
                .any(|step| step.starts_with("SEARCH plan") && step.contains("(key>?)")),
            "the cursor does not seek into the index: {after:?}"
        );
    }

    /// `sessions_of` and `destroy_all_of` find a principal's rows through
    /// the principal index, never by scanning the table nor by walking the
    /// expiry index, even once `ANALYZE` has told SQLite that most rows are
    /// live and that few have a principal. The plans of the statements the
    /// store runs, with and without a key to keep.
    #[test]
    #[allow(clippy::unwrap_used, reason = "test")]
    fn a_principal_s_sessions_are_found_through_the_principal_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        prepare(&mut conn, "plan").unwrap();
        // 5,000 rows, one in 50 expired, one in 10 of one of 50 principals.
        conn.execute_batch(
            "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 5000) \
             INSERT INTO plan SELECT printf('%064x', n * 7919), '{}', 0, \
             CASE WHEN n % 50 = 0 THEN 1 ELSE 9000000000000 END, 0, \
             CASE WHEN n % 10 = 0 THEN 'user:' || (n % 500) END FROM i; ANALYZE;",
        )
        .unwrap();
        let index = "plan__principal";
        let sql = Statements::new("plan");
        let plan =
            |statement: &str, args: &[&dyn rusqlite::ToSql]| query_plan(&conn, statement, args);
        let (who, now, keep) = ("user:10", 1_000_i64, "00");
        let none: Option<&str> = None;
        for (what, steps) in [
            ("sessions_of", plan(&sql.sessions_of, &[&who, &now])),
            (
                "destroy_all_of",
                plan(&sql.destroy_all_of, &[&who, &now, &keep]),
            ),
            (
                "destroy_all_of",
                plan(&sql.destroy_all_of, &[&who, &now, &none]),
            ),
            ("index_len", plan(&sql.index_len, &[&who])),
        ] {
            println!("{what}: {steps:?}");
            assert!(
                steps
                    .iter()
                    .any(|step| step.starts_with("SEARCH plan") && step.contains(index)),
                "{what} does not search {index}: {steps:?}"
            );
            assert!(
                !steps.iter().any(|step| step.starts_with("SCAN")),
                "{what} scans: {steps:?}"
            );
        }
    }
}
