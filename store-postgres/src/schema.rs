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
/// - `2`: a nullable `principal TEXT` column (`NULL` for none) and a partial
///   B-tree index `<table>__principal` on it `WHERE principal IS NOT NULL`.
///   A table recorded at version 1 is migrated when a store is built on it.
pub const SCHEMA_VERSION: i32 = 2;

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

/// Create the schema, its registry and `table` (with its indexes) if
/// missing, or migrate a table recorded at version 1, in one transaction
/// holding an advisory lock so that concurrent builders (other processes
/// included) serialize. A table recorded at a layout version this crate
/// does not know, or a table of that name that the registry does not list
/// (another application's), is refused.
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
    let recorded = match recorded {
        Some(1) => {
            // Version 1 → 2: the column, here (nullable without a default:
            // no row is rewritten); its index is created below with the
            // other `IF NOT EXISTS` statements, which also recreate a
            // registered table dropped by hand. Both take the table's lock
            // until this transaction commits.
            tx.batch_execute(&format!(
                "ALTER TABLE IF EXISTS {name} ADD COLUMN IF NOT EXISTS principal TEXT"
            ))
            .await
            .map_err(backend)?;
            tx.execute(
                &format!("UPDATE \"{schema}\".{REGISTRY} SET layout = $2 WHERE name = $1"),
                &[&table, &SCHEMA_VERSION],
            )
            .await
            .map_err(backend)?;
            Some(SCHEMA_VERSION)
        }
        other => other,
    };
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
             version    BIGINT NOT NULL,
             principal  TEXT
         );
         CREATE INDEX IF NOT EXISTS \"{table}__expires_at\"
             ON \"{schema}\".\"{table}\" (expires_at);
         CREATE INDEX IF NOT EXISTS \"{table}__principal\"
             ON \"{schema}\".\"{table}\" (principal) WHERE principal IS NOT NULL;"
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
    /// `$1 key, $2 now` → `data, created_at, expires_at, version,
    /// principal`.
    pub(crate) load: String,
    /// `$1 key, $2 data, $3 created_at, $4 expires_at, $5 version, $6 now,
    /// $7 principal`: inserts, or replaces a row that is expired at `now`;
    /// 1 row if it wrote, 0 if a live row is in the way.
    pub(crate) create: String,
    /// `$1 key, $2 data, $3 created_at, $4 expires_at, $5 new version,
    /// $6 expected version, $7 now, $8 principal` → one row: the live row's
    /// version before (NULL: no live row) and whether the update was
    /// applied.
    pub(crate) update: String,
    /// `$1 key, $2 expected version, $3 now` → as `update`, but an applied
    /// update deletes the row (the new record is already expired).
    pub(crate) update_expired: String,
    /// `$1 key, $2 data, $3 created_at, $4 expires_at, $5 version,
    /// $6 principal`: upsert.
    pub(crate) save: String,
    /// `$1 key, $2 expires_at, $3 now`: 1 row if the row was live. The
    /// principal is not touched.
    pub(crate) touch: String,
    /// `$1 key`.
    pub(crate) destroy: String,
    /// No parameters: `TRUNCATE`.
    pub(crate) clear: String,
    /// `$1 now` → the count of live rows.
    pub(crate) len: String,
    /// `$1 now, $2 limit` → `key, data, created_at, expires_at, version,
    /// principal` of the first `limit` live rows in key order (walks the
    /// primary key).
    pub(crate) list_first: String,
    /// `$1 key, $2 now, $3 limit`: as [`list_first`](Self::list_first), of
    /// the rows whose key sorts after `key`.
    pub(crate) list_after: String,
    /// `$1 now, $2 batch size`: deletes up to that many rows expired at
    /// `now`, found in expiry order through the expiry index, and removed by
    /// their physical address (a TID scan).
    pub(crate) delete_expired: String,
    /// `$1 principal, $2 now` → `key, data, created_at, expires_at,
    /// version, principal` of the principal's live rows (through the
    /// principal index).
    pub(crate) sessions_of: String,
    /// `$1 principal, $2 now, $3 key to keep or NULL`: deletes the
    /// principal's live rows but that key (through the principal index);
    /// the number of rows is how many were destroyed.
    pub(crate) destroy_all_of: String,
    /// `$1 principal` → how many rows name the principal, expired ones not
    /// yet reaped included.
    pub(crate) index_len: String,
}

impl Statements {
    /// The statements for `schema.table`, both validated by
    /// [`NAMES`].
    pub(crate) fn new(schema: &str, table: &str) -> Self {
        let t = format!("\"{schema}\".\"{table}\"");
        let columns = "key, data, created_at, expires_at, version, principal";
        let cur = format!(
            "cur AS (SELECT version FROM {t} WHERE key = $1 AND expires_at > $NOW \
             FOR NO KEY UPDATE)"
        );
        Self {
            load: format!(
                "SELECT data, created_at, expires_at, version, principal FROM {t} \
                 WHERE key = $1 AND expires_at > $2"
            ),
            create: format!(
                "INSERT INTO {t} AS s ({columns}) \
                 VALUES ($1, $2, $3, $4, $5, $7) \
                 ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, \
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
                 version = EXCLUDED.version, principal = EXCLUDED.principal \
                 WHERE s.expires_at <= $6"
            ),
            update: format!(
                "WITH {}, \
                 upd AS (UPDATE {t} AS s SET data = $2, created_at = $3, expires_at = $4, \
                 version = $5, principal = $8 FROM cur WHERE s.key = $1 AND cur.version = $6 \
                 RETURNING 1) \
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
                "INSERT INTO {t} ({columns}) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, \
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
                 version = EXCLUDED.version, principal = EXCLUDED.principal"
            ),
            touch: format!("UPDATE {t} SET expires_at = $2 WHERE key = $1 AND expires_at > $3"),
            destroy: format!("DELETE FROM {t} WHERE key = $1"),
            clear: format!("TRUNCATE TABLE {t}"),
            len: format!("SELECT count(*) FROM {t} WHERE expires_at > $1"),
            list_first: format!(
                "SELECT {columns} FROM {t} \
                 WHERE expires_at > $1 ORDER BY key LIMIT $2"
            ),
            list_after: format!(
                "SELECT {columns} FROM {t} \
                 WHERE key > $1 AND expires_at > $2 ORDER BY key LIMIT $3"
            ),
            delete_expired: format!(
                "DELETE FROM {t} WHERE ctid = ANY (ARRAY(\
                 SELECT ctid FROM {t} WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)) \
                 AND expires_at <= $1"
            ),
            sessions_of: format!(
                "SELECT {columns} FROM {t} WHERE principal = $1 AND expires_at > $2"
            ),
            destroy_all_of: format!(
                "DELETE FROM {t} WHERE principal = $1 AND expires_at > $2 \
                 AND key IS DISTINCT FROM $3"
            ),
            index_len: format!("SELECT count(*) FROM {t} WHERE principal = $1"),
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
    /// expired, one in 10 of one of 50 principals, the rest anonymous)
    /// after `ANALYZE`, for the plan tests; `None` when the run opted out of
    /// PostgreSQL.
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
                "INSERT INTO {t} (key, data, created_at, expires_at, version, principal) \
                 SELECT sha256(i::text::bytea), '{{}}', 0, \
                 CASE WHEN i % 50 = 0 THEN 1000 + i ELSE 4000000000000 + i END, 0, \
                 CASE WHEN i % 10 = 0 THEN 'user:' || (i % 500) END \
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

    /// `sessions_of`, `destroy_all_of` (with and without a key to keep) and
    /// `index_len` find a principal's rows through the principal's partial
    /// index, never by scanning the table: the plans of the statements the
    /// store runs, custom and generic, on a table of 20,000 rows (2,000 with
    /// a principal) after `ANALYZE`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::unwrap_used, clippy::panic, reason = "test")]
    async fn a_principal_s_sessions_are_found_through_the_principal_index() {
        use tokio_postgres::types::ToSql;

        let Some((client, schema, table, _)) = plan_table().await else {
            return;
        };
        let sql = Statements::new(schema, &table);
        let (who, now) = ("user:10", 2_000_000_000_000_i64);
        let keep: Option<&[u8]> = Some(&[0x80; 32]);
        let none: Option<&[u8]> = None;
        let mut plans = Vec::new();
        for (what, statement, params) in [
            (
                "sessions_of",
                &sql.sessions_of,
                vec![&who as &(dyn ToSql + Sync), &now],
            ),
            (
                "destroy_all_of",
                &sql.destroy_all_of,
                vec![&who, &now, &keep],
            ),
            (
                "destroy_all_of",
                &sql.destroy_all_of,
                vec![&who, &now, &none],
            ),
            ("index_len", &sql.index_len, vec![&who]),
        ] {
            let plan: Vec<String> = client
                .query(&format!("EXPLAIN {statement}"), &params)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect();
            plans.push((what, plan.join("\n")));
        }
        // The store's statements are prepared once per connection, and
        // PostgreSQL may settle on a generic plan (no parameter values)
        // after a few executions: that plan must use the index too.
        client
            .batch_execute("SET plan_cache_mode = force_generic_plan")
            .await
            .unwrap();
        for (what, statement, types, args) in [
            (
                "sessions_of (generic)",
                &sql.sessions_of,
                "text, bigint",
                "'user:10', 1",
            ),
            (
                "destroy_all_of (generic)",
                &sql.destroy_all_of,
                "text, bigint, bytea",
                "'user:10', 1, NULL",
            ),
        ] {
            client
                .batch_execute(&format!("PREPARE generic ({types}) AS {statement}"))
                .await
                .unwrap();
            let plan: Vec<String> = client
                .simple_query(&format!("EXPLAIN EXECUTE generic ({args})"))
                .await
                .unwrap()
                .iter()
                .filter_map(|message| match message {
                    tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                    _ => None,
                })
                .collect();
            client.batch_execute("DEALLOCATE generic").await.unwrap();
            plans.push((what, plan.join("\n")));
        }
        client.batch_execute("RESET plan_cache_mode").await.unwrap();
        drop_plan_table(&client, schema, &table).await;
        let index = format!("{table}__principal");
        for (what, plan) in &plans {
            println!("{what}:\n{plan}");
            assert!(
                plan.contains(&format!("Index Scan using {index} "))
                    || plan.contains(&format!("Index Only Scan using {index} "))
                    || plan.contains(&format!("Bitmap Index Scan on {index}")),
                "{what} does not use {index}:\n{plan}"
            );
            assert!(
                !plan.contains("Seq Scan"),
                "{what} scans the table:\n{plan}"
            );
        }
    }
}
