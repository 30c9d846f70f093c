//! The table layout, its version marker, and the SQL text of every
//! statement (built once per table, from validated identifiers).

use deadpool_postgres::Client;
use session_core::Result;
use session_core::sql::{Identifiers, Layout};

use crate::{BACKEND, backend};

/// The layout version this crate writes, recorded per namespace table in the
/// registry table of its schema; a table recorded with another version is
/// refused with [`Error::Config`](session_core::Error::Config) rather than touched.
///
/// History:
/// - `1`: one table per namespace `(key BYTEA PRIMARY KEY, data TEXT,
///   created_at BIGINT, expires_at BIGINT, version BIGINT)`, times in Unix
///   milliseconds, with a B-tree index `<table>__expires_at` on
///   `expires_at`.
pub const SCHEMA_VERSION: i32 = 1;

/// What a registry row's version means to this crate.
const LAYOUT: Layout = Layout::new(BACKEND, "session-store-postgres", SCHEMA_VERSION as i64);

/// The registry of a schema: one row per namespace table, with the layout
/// version it was created at. Its name holds `__`, which a namespace may
/// not, so no namespace can ever collide with it.
pub(crate) const REGISTRY: &str = "session_store__registry";

/// An advisory lock key that serializes the creation of tables (and of the
/// schema and registry) between processes: `CREATE ... IF NOT EXISTS` is not
/// safe against a concurrent `CREATE` of the same name.
const CREATE_LOCK: i64 = 0x05e5_5101_1705_76e5;

/// The rule for table and schema names: [`Identifiers`], at most 63 bytes
/// (PostgreSQL's limit), and not starting with `pg_` (reserved by
/// PostgreSQL).
pub(crate) const NAMES: Identifiers = Identifiers::new(BACKEND, 63).reserving("pg_", "PostgreSQL");

/// Create the schema, its registry and `table` (with its expiry index) if
/// missing, in one transaction holding an advisory lock so that concurrent
/// builders (other processes included) serialize. A table recorded at a
/// layout version this crate does not know, or a table of that name that the
/// registry does not list (another application's), is refused.
pub(crate) async fn prepare(client: &mut Client, schema: &str, table: &str) -> Result<()> {
    let tx = client.transaction().await.map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CREATE_LOCK])
        .await
        .map_err(backend)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         CREATE TABLE IF NOT EXISTS \"{schema}\".{REGISTRY} (
             name   TEXT    PRIMARY KEY NOT NULL,
             layout INTEGER NOT NULL
         );"
    ))
    .await
    .map_err(backend)?;
    let recorded = tx
        .query_opt(
            &format!("SELECT layout FROM \"{schema}\".{REGISTRY} WHERE name = $1"),
            &[&table],
        )
        .await
        .map_err(backend)?;
    let recorded: Option<i32> = recorded
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(backend)?;
    let name = format!("\"{schema}\".\"{table}\"");
    if !LAYOUT.check(&name, recorded.map(i64::from))? {
        let exists = tx
            .query_one(
                "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
                &[&schema, &table],
            )
            .await
            .map_err(backend)?;
        if exists.try_get::<_, bool>(0).map_err(backend)? {
            return Err(LAYOUT.foreign(&name));
        }
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS \"{schema}\".\"{table}\" (
             key        BYTEA  PRIMARY KEY NOT NULL CHECK (octet_length(key) = 32),
             data       TEXT   NOT NULL,
             created_at BIGINT NOT NULL,
             expires_at BIGINT NOT NULL,
             version    BIGINT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS \"{table}__expires_at\"
             ON \"{schema}\".\"{table}\" (expires_at);"
    ))
    .await
    .map_err(backend)?;
    tx.execute(
        &format!(
            "INSERT INTO \"{schema}\".{REGISTRY} (name, layout) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING"
        ),
        &[&table, &SCHEMA_VERSION],
    )
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)
}

/// The SQL of every statement on one table. Parameters are numbered; `now`
/// is always a parameter (the process clock), never PostgreSQL's `now()`.
#[derive(Debug)]
pub(crate) struct Statements {
    /// `$1 key, $2 now` → `data, created_at, expires_at, version`.
    pub(crate) load: String,
    /// `$1 key, $2 data, $3 created_at, $4 expires_at, $5 version, $6 now`:
    /// inserts, or replaces a row that is expired at `now`; 1 row if it
    /// wrote, 0 if a live row is in the way.
    pub(crate) create: String,
    /// `$1 key, $2 data, $3 created_at, $4 expires_at, $5 new version,
    /// $6 expected version, $7 now` → one row: the live row's version
    /// before (NULL: no live row) and whether the update was applied.
    pub(crate) update: String,
    /// `$1 key, $2 expected version, $3 now` → as `update`, but an applied
    /// update deletes the row (the new record is already expired).
    pub(crate) update_expired: String,
    /// `$1 key, $2 data, $3 created_at, $4 expires_at, $5 version`: upsert.
    pub(crate) save: String,
    /// `$1 key, $2 expires_at, $3 now`: 1 row if the row was live.
    pub(crate) touch: String,
    /// `$1 key`.
    pub(crate) destroy: String,
    /// No parameters: `TRUNCATE`.
    pub(crate) clear: String,
    /// `$1 now` → the count of live rows.
    pub(crate) len: String,
    /// `$1 now, $2 limit` → `key, data, created_at, expires_at, version`
    /// of the first `limit` live rows in key order (walks the primary key).
    pub(crate) list_first: String,
    /// `$1 key, $2 now, $3 limit`: as [`list_first`](Self::list_first), of
    /// the rows whose key sorts after `key`.
    pub(crate) list_after: String,
    /// `$1 now, $2 batch size`: deletes up to that many rows expired at
    /// `now`, found in expiry order through the expiry index, and removed by
    /// their physical address (a TID scan).
    pub(crate) delete_expired: String,
}

impl Statements {
    /// The statements for `schema.table`, both validated by
    /// [`NAMES`].
    pub(crate) fn new(schema: &str, table: &str) -> Self {
        let t = format!("\"{schema}\".\"{table}\"");
        let cur = format!(
            "cur AS (SELECT version FROM {t} WHERE key = $1 AND expires_at > $NOW \
             FOR NO KEY UPDATE)"
        );
        Self {
            load: format!(
                "SELECT data, created_at, expires_at, version FROM {t} \
                 WHERE key = $1 AND expires_at > $2"
            ),
            create: format!(
                "INSERT INTO {t} AS s (key, data, created_at, expires_at, version) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, \
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
                 version = EXCLUDED.version \
                 WHERE s.expires_at <= $6"
            ),
            update: format!(
                "WITH {}, \
                 upd AS (UPDATE {t} AS s SET data = $2, created_at = $3, expires_at = $4, \
                 version = $5 FROM cur WHERE s.key = $1 AND cur.version = $6 RETURNING 1) \
                 SELECT (SELECT version FROM cur), EXISTS (SELECT 1 FROM upd)",
                cur.replace("$NOW", "$7")
            ),
            update_expired: format!(
                "WITH {}, \
                 del AS (DELETE FROM {t} AS s USING cur WHERE s.key = $1 AND cur.version = $2 \
                 RETURNING 1) \
                 SELECT (SELECT version FROM cur), EXISTS (SELECT 1 FROM del)",
                cur.replace("$NOW", "$3")
            ),
            save: format!(
                "INSERT INTO {t} (key, data, created_at, expires_at, version) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, \
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
                 version = EXCLUDED.version"
            ),
            touch: format!("UPDATE {t} SET expires_at = $2 WHERE key = $1 AND expires_at > $3"),
            destroy: format!("DELETE FROM {t} WHERE key = $1"),
            clear: format!("TRUNCATE TABLE {t}"),
            len: format!("SELECT count(*) FROM {t} WHERE expires_at > $1"),
            list_first: format!(
                "SELECT key, data, created_at, expires_at, version FROM {t} \
                 WHERE expires_at > $1 ORDER BY key LIMIT $2"
            ),
            list_after: format!(
                "SELECT key, data, created_at, expires_at, version FROM {t} \
                 WHERE key > $1 AND expires_at > $2 ORDER BY key LIMIT $3"
            ),
            delete_expired: format!(
                "DELETE FROM {t} WHERE ctid = ANY (ARRAY(\
                 SELECT ctid FROM {t} WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)) \
                 AND expires_at <= $1"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_identifiers_not_reserved_by_postgres() {
        for good in ["sessions", "public", &"a".repeat(63)] {
            NAMES.check("table", good).unwrap();
        }
        for bad in [
            "x; DROP TABLE y",
            "a__b",
            "pg_catalog",
            "PG_x",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(
                    NAMES.check("table", bad),
                    Err(session_core::Error::Config { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    /// A table of the store's layout holding 20,000 rows (one in 50
    /// expired) after `ANALYZE`, for the plan tests; `None` when the run
    /// opted out of PostgreSQL.
    #[allow(clippy::unwrap_used, reason = "test")]
    async fn plan_table() -> Option<(deadpool_postgres::Object, &'static str, String, String)> {
        use session_conformance::env::POSTGRES;
        if POSTGRES.skip_reason().is_some() {
            return None;
        }
        let url = POSTGRES.url();
        let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
            url.parse().unwrap(),
            tokio_postgres::NoTls,
        ))
        .max_size(1)
        .build()
        .unwrap();
        let mut client = pool
            .get()
            .await
            .unwrap_or_else(|e| POSTGRES.unreachable(&url, &e));
        let (schema, table) = ("session_tests", session_conformance::unique_namespace());
        prepare(&mut client, schema, &table).await.unwrap();
        let t = format!("\"{schema}\".\"{table}\"");
        client
            .batch_execute(&format!(
                "INSERT INTO {t} (key, data, created_at, expires_at, version) \
                 SELECT sha256(i::text::bytea), '{{}}', 0, \
                 CASE WHEN i % 50 = 0 THEN 1000 + i ELSE 4000000000000 + i END, 0 \
                 FROM generate_series(1, 20000) AS i; ANALYZE {t};"
            ))
            .await
            .unwrap();
        Some((client, schema, table, t))
    }

    /// Remove what [`plan_table`] made.
    #[allow(clippy::unwrap_used, reason = "test")]
    async fn drop_plan_table(client: &deadpool_postgres::Object, schema: &str, table: &str) {
        client
            .batch_execute(&format!(
                "DROP TABLE \"{schema}\".\"{table}\"; \
                 DELETE FROM \"{schema}\".{REGISTRY} WHERE name = '{table}'"
            ))
            .await
            .unwrap();
    }

    /// `delete_expired` finds expired rows through the expiry index, never
    /// by scanning the table: the plan of the statement the store runs, on
    /// a table of 20,000 rows (a few hundred expired) after `ANALYZE`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::unwrap_used, clippy::panic, reason = "test")]
    async fn delete_expired_uses_the_expiry_index() {
        let Some((client, schema, table, _)) = plan_table().await else {
            return;
        };
        let statement = Statements::new(schema, &table).delete_expired;
        let plan: Vec<String> = client
            .query(
                &format!("EXPLAIN {statement}"),
                &[&2_000_000_000_000_i64, &1000_i64],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect();
        drop_plan_table(&client, schema, &table).await;
        let plan = plan.join("\n");
        let index = format!("{table}__expires_at");
        assert!(
            plan.contains(&format!("Index Scan using \"{index}\""))
                || plan.contains(&format!("Index Scan using {index}")),
            "the plan does not walk {index}:\n{plan}"
        );
        assert!(
            plan.contains("Tid Scan"),
            "rows are not deleted by address:\n{plan}"
        );
        assert!(!plan.contains("Seq Scan"), "a table scan:\n{plan}");
    }

    /// `list` walks the primary key's index in key order from the cursor
    /// on, reading no more than a page: no table scan, no sort. The plans
    /// of both statements the store runs, with a page of 1,000
    /// (`session_core::ALL_PAGE`) on a table of 20,000 rows (a few hundred
    /// expired) after `ANALYZE`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::unwrap_used, clippy::panic, reason = "test")]
    async fn list_walks_the_primary_key() {
        let Some((client, schema, table, t)) = plan_table().await else {
            return;
        };
        let index: String = client
            .query_one(
                "SELECT conindid::regclass::text FROM pg_constraint \
                 WHERE conrelid = to_regclass($1) AND contype = 'p'",
                &[&t],
            )
            .await
            .unwrap()
            .get(0);
        let sql = Statements::new(schema, &table);
        let (now, limit) = (2_000_000_000_000_i64, 1000_i64);
        let after: &[u8] = &[0x80; 32];
        let mut plans = Vec::new();
        for (statement, params) in [
            (
                &sql.list_first,
                vec![&now as &(dyn tokio_postgres::types::ToSql + Sync), &limit],
            ),
            (&sql.list_after, vec![&after, &now, &limit]),
        ] {
            let plan: Vec<String> = client
                .query(&format!("EXPLAIN {statement}"), &params)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect();
            plans.push(plan.join("\n"));
        }
        drop_plan_table(&client, schema, &table).await;
        println!("list_first:\n{}\nlist_after:\n{}", plans[0], plans[1]);
        // `regclass::text` quotes the name only when it needs quotes.
        let index = index.rsplit('.').next().unwrap_or(&index).to_owned();
        for plan in &plans {
            assert!(
                plan.contains(&format!("Index Scan using {index} ")),
                "the plan does not walk {index}:\n{plan}"
            );
            assert!(!plan.contains("Sort"), "a sort:\n{plan}");
            assert!(!plan.contains("Seq Scan"), "a table scan:\n{plan}");
        }
        assert!(
            plans[1].contains("Index Cond: (key > "),
            "the cursor does not seek into the index:\n{}",
            plans[1]
        );
    }
}
