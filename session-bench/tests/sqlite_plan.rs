//! The SQLite store's `delete_expired` finds expired rows through its expiry
//! index, not by scanning the table (issue 5: "check the query plan").
#![cfg(feature = "sqlite")]

use rusqlite::Connection;
use session_core::SessionStore as _;
use session_store_sqlite::SqliteStore;

#[tokio::test]
async fn sqlite_delete_expired_uses_the_expiry_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.db");
    let store = SqliteStore::builder(&path)
        .with_table("plan")
        .build()
        .await
        .unwrap();
    store.delete_expired().await.unwrap();
    let conn = Connection::open(&path).unwrap();
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'plan'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expiry_index = indexes
        .iter()
        .find(|n| n.contains("expires_at"))
        .unwrap_or_else(|| panic!("no expiry index among {indexes:?}"));
    // The statement of session-store-sqlite's schema.rs.
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN DELETE FROM \"plan\" WHERE rowid IN \
             (SELECT rowid FROM \"plan\" WHERE expires_at <= ?1 LIMIT ?2)",
        )
        .unwrap()
        .query_map([0_i64, 1000], |row| row.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter().any(
            |step| step.contains(&format!("USING COVERING INDEX {expiry_index}"))
                || step.contains(&format!("USING INDEX {expiry_index}"))
        ),
        "plan does not use {expiry_index}: {plan:?}"
    );
    assert!(
        !plan.iter().any(|s| s.starts_with("SCAN plan")),
        "table scan: {plan:?}"
    );
    drop(store);
}
