//! session-admin against real stores: the library's migration across three
//! backends with the visitors' own cookies, exact export and import, and
//! the binary's commands, errors and exit codes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use serde_json::json;
use session_admin::{Copied, Existing, export, import, migrate, parse_line};
use session_conformance::env::REDIS;
use session_conformance::fixtures::{key, object};
use session_conformance::unique_namespace;
use session_core::{Record, SessionConfig, SessionManager, SessionStore, Timestamp};
use session_store_memory::MemoryStore;
use session_store_redis::RedisStoreBuilder;
use session_store_sqlite::{SqliteStore, Synchronous};

fn hidden() -> ProgressBar {
    ProgressBar::hidden()
}

/// 10,000 visitors sign in on a memory store; their sessions move to
/// SQLite and from there to Redis with the library's `migrate`; every
/// visitor's original cookie still opens their own session on Redis, with
/// its data and expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sessions_move_memory_to_sqlite_to_redis_and_every_cookie_still_works() {
    if let Some(reason) = REDIS.skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let config = SessionConfig::new().with_ttl(Duration::from_secs(3_600));
    let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let on_memory = SessionManager::new(Arc::clone(&memory), config.clone()).unwrap();
    let mut cookies = Vec::new();
    for i in 0..10_000u64 {
        let mut session = on_memory.load(None).await.unwrap();
        session.insert("user", i).unwrap();
        session.insert("big", u64::MAX - i).unwrap();
        session.commit().await.unwrap();
        cookies.push((session.id().expose().to_owned(), i, session.expires_at()));
    }
    assert_eq!(memory.len().await.unwrap(), 10_000);

    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn SessionStore> = Arc::new(
        SqliteStore::builder(dir.path().join("s.db"))
            // The test's durability need is a process that stays up.
            .with_synchronous(Synchronous::Normal)
            .build()
            .await
            .unwrap(),
    );
    let first = migrate(&*memory, &*sqlite, Existing::Keep, false, &hidden())
        .await
        .unwrap();
    assert_eq!(
        first,
        Copied {
            read: 10_000,
            written: 10_000,
            already_there: 0,
            expired: 0
        }
    );

    let url = REDIS.url();
    let redis = RedisStoreBuilder::new()
        .with_namespace(format!("admin_{}", unique_namespace()))
        .connect(&url)
        .await
        .unwrap_or_else(|e| REDIS.unreachable(&url, &e));
    let redis: Arc<dyn SessionStore> = Arc::new(redis);
    let second = migrate(&*sqlite, &*redis, Existing::Keep, false, &hidden())
        .await
        .unwrap();
    assert_eq!(second.written, 10_000, "{second:?}");
    assert_eq!(redis.len().await.unwrap(), 10_000);

    let on_redis = SessionManager::new(Arc::clone(&redis), config).unwrap();
    for (cookie, i, expires_at) in &cookies {
        let session = on_redis.load(Some(cookie)).await.unwrap();
        assert!(!session.is_new(), "visitor {i} was signed out by the move");
        assert_eq!(session.get::<u64>("user").unwrap(), Some(*i));
        assert_eq!(session.get::<u64>("big").unwrap(), Some(u64::MAX - i));
        assert_eq!(session.expires_at(), *expires_at, "visitor {i}'s expiry");
    }
    // Again: every session is already there, nothing is replaced.
    let again = migrate(&*sqlite, &*redis, Existing::Keep, false, &hidden())
        .await
        .unwrap();
    assert_eq!((again.written, again.already_there), (0, 10_000));
    redis.clear().await.unwrap();
}

/// Export then import gives back every record exactly: data (integer
/// extremes, floats bit for bit, unicode), times and version; expired
/// records are neither exported nor imported.
#[tokio::test]
async fn export_and_import_keep_records_exactly() {
    let source = MemoryStore::new();
    let now = Timestamp::now();
    let mut expected = Vec::new();
    for (i, data) in [
        json!({"max": u64::MAX, "min": i64::MIN, "f": 0.1, "tiny": 5e-324, "neg0": -0.0}),
        json!({"text": "ünïcødé ✓ 😀\n\"quoted\"", "nested": {"a": [1, null, true]}}),
        json!({}),
    ]
    .into_iter()
    .enumerate()
    {
        let k = key();
        let record = Record::with_times(
            object(data),
            now - Duration::from_secs(60),
            now + Duration::from_secs(600 + i as u64),
        )
        .with_version(u64::MAX - i as u64);
        source.save(&k, &record).await.unwrap();
        expected.push((k, record));
    }
    let mut out = Vec::new();
    assert_eq!(export(&source, &mut out, &hidden()).await.unwrap(), 3);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 3);
    for line in text.lines() {
        let (k, record) = parse_line(line).unwrap();
        assert!(expected.contains(&(k, record)), "{line}");
    }

    let target = MemoryStore::new();
    let copied = import(
        &target,
        &mut text.as_bytes(),
        Existing::Keep,
        false,
        &hidden(),
    )
    .await
    .unwrap();
    assert_eq!((copied.read, copied.written), (3, 3));
    let mut back = target.all().await.unwrap();
    back.sort_by_key(|(k, _)| *k);
    expected.sort_by_key(|(k, _)| *k);
    assert_eq!(back, expected);
    for ((_, got), (_, want)) in back.iter().zip(&expected) {
        assert_eq!(
            got.data.encoded().unwrap().as_str(),
            want.data.encoded().unwrap().as_str(),
            "the data's JSON text, float bits and integer kinds included"
        );
    }
}

/// A line that is not an export line stops the import, naming its number;
/// lines before it were imported, nothing after it.
#[tokio::test]
async fn a_bad_line_stops_the_import_and_names_its_number() {
    let source = MemoryStore::new();
    source
        .save(
            &key(),
            &Record::new(object(json!({"a": 1})), Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    export(&source, &mut out, &hidden()).await.unwrap();
    let good = String::from_utf8(out).unwrap();
    for bad in [
        "not json",
        r#"{"key":"00","created_at":0,"expires_at":0,"version":0,"data":"{}"}"#,
        r#"{"key":"KEY","created_at":0,"expires_at":0,"version":0,"data":"[1]"}"#,
        r#"{"key":"KEY","created_at":0,"expires_at":0,"version":-1,"data":"{}"}"#,
        r#"{"key":"KEY","created_at":0,"expires_at":0,"version":0,"data":"{}","extra":1}"#,
    ] {
        let bad = bad.replace("KEY", key().as_str());
        let input = format!("{good}\n{bad}\n{good}");
        let target = MemoryStore::new();
        let error = import(
            &target,
            &mut input.as_bytes(),
            Existing::Keep,
            false,
            &hidden(),
        )
        .await
        .unwrap_err();
        assert!(error.to_string().starts_with("line 3: "), "{bad}: {error}");
        assert_eq!(target.len().await.unwrap(), 1, "{bad}");
    }
}

/// `--dry-run` reads and counts but writes nothing; `Existing::Keep`
/// never replaces a live session of the target, `Replace` does.
#[tokio::test]
async fn dry_runs_write_nothing_and_existing_sessions_are_kept_unless_told() {
    let source = MemoryStore::new();
    let target = MemoryStore::new();
    let shared = key();
    let old = Record::new(object(json!({"v": "source"})), Duration::from_secs(60));
    let newer = Record::new(object(json!({"v": "target"})), Duration::from_secs(60));
    source.save(&shared, &old).await.unwrap();
    source.save(&key(), &old).await.unwrap();
    target.save(&shared, &newer).await.unwrap();

    let dry = migrate(&source, &target, Existing::Keep, true, &hidden())
        .await
        .unwrap();
    assert_eq!((dry.read, dry.written), (2, 2));
    assert_eq!(target.len().await.unwrap(), 1, "a dry run wrote");

    let kept = migrate(&source, &target, Existing::Keep, false, &hidden())
        .await
        .unwrap();
    assert_eq!((kept.written, kept.already_there), (1, 1));
    assert_eq!(target.load(&shared).await.unwrap(), Some(newer));

    let replaced = migrate(&source, &target, Existing::Replace, false, &hidden())
        .await
        .unwrap();
    assert_eq!(replaced.written, 2);
    assert_eq!(target.load(&shared).await.unwrap(), Some(old));
}

/// Run the binary with `args`.
async fn admin(args: &[&str]) -> Output {
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_session-admin"))
            .args(args)
            .env_remove("SESSION_ADMIN_STORE")
            .output(),
    )
    .await
    .expect("session-admin finished within 60 s")
    .unwrap()
}

/// [`admin`] with owned arguments.
async fn admin_owned(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    admin(&args).await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The binary end to end on files: count, list (table and JSON), export,
/// import into another backend (sled) with a dry run first, migrate to a
/// third (files), destroy by key, purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_counts_lists_exports_imports_migrates_and_destroys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let sqlite_url = format!("sqlite://{}", db.display());
    {
        let store = SqliteStore::open(&db).await.unwrap();
        for i in 0..1_234 {
            store
                .save(
                    &key(),
                    &Record::new(object(json!({"i": i})), Duration::from_secs(600)),
                )
                .await
                .unwrap();
        }
    }
    let count = admin(&["--store", &sqlite_url, "count"]).await;
    assert!(count.status.success(), "{}", stderr(&count));
    assert_eq!(stdout(&count).trim(), "1234");

    let list = admin(&["--store", &sqlite_url, "list", "--limit", "5"]).await;
    assert!(list.status.success(), "{}", stderr(&list));
    let table = stdout(&list);
    assert_eq!(table.lines().count(), 6, "{table}");
    assert!(table.starts_with("key "), "{table}");

    let json = admin(&["--store", &sqlite_url, "list", "--json"]).await;
    let rows: Vec<serde_json::Value> = stdout(&json)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1_234);
    assert_eq!(rows[0]["key"].as_str().unwrap().len(), 64);
    // `{"i":N}` is 7 to 10 bytes.
    assert!(
        rows.iter()
            .all(|r| (7..=10).contains(&r["bytes"].as_u64().unwrap())),
        "{:?}",
        rows[0]
    );

    let export_file = dir.path().join("sessions.jsonl");
    let exported = admin(&[
        "--store",
        &sqlite_url,
        "export",
        "--out",
        export_file.to_str().unwrap(),
    ])
    .await;
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert!(stderr(&exported).contains("exported 1234 session(s)"));

    let sled_url = format!("sled://{}", dir.path().join("sled").display());
    let dry = admin(&[
        "--store",
        &sled_url,
        "import",
        "--in",
        export_file.to_str().unwrap(),
        "--dry-run",
    ])
    .await;
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(
        stdout(&dry).trim(),
        "read 1234, would write 1234, already there 0, expired 0"
    );
    assert_eq!(
        stdout(&admin(&["--store", &sled_url, "count"]).await).trim(),
        "0"
    );
    let imported = admin(&[
        "--store",
        &sled_url,
        "import",
        "--in",
        export_file.to_str().unwrap(),
    ])
    .await;
    assert_eq!(
        stdout(&imported).trim(),
        "read 1234, wrote 1234, already there 0, expired 0"
    );

    let file_url = format!("file://{}", dir.path().join("files").display());
    let migrated = admin(&["--store", &sled_url, "migrate", "--to", &file_url]).await;
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert_eq!(
        stdout(&migrated).trim(),
        "read 1234, wrote 1234, already there 0, expired 0"
    );
    assert_eq!(
        stdout(&admin(&["--store", &file_url, "count"]).await).trim(),
        "1234"
    );

    let first_key = rows[0]["key"].as_str().unwrap();
    let dry = admin(&[
        "--store",
        &file_url,
        "destroy",
        "--key",
        first_key,
        "--dry-run",
    ])
    .await;
    assert_eq!(
        stdout(&dry).trim(),
        "would destroy 1 live session(s) of 1 key(s)"
    );
    let destroyed = admin(&["--store", &file_url, "destroy", "--key", first_key]).await;
    assert_eq!(
        stdout(&destroyed).trim(),
        "destroyed 1 live session(s) of 1 key(s)"
    );
    assert_eq!(
        stdout(&admin(&["--store", &file_url, "count"]).await).trim(),
        "1233"
    );

    let purged = admin(&["--store", &file_url, "purge-expired"]).await;
    assert!(purged.status.success(), "{}", stderr(&purged));
    assert_eq!(stdout(&purged).trim(), "0");
}

/// Usage mistakes exit 2 before anything is opened; an unreachable server
/// exits 1 within a bounded time with its address and without the
/// password; a bad key and cookie-only "stores" are refused with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_and_unreachable_servers_are_clear_errors() {
    let bad_url = admin(&["--store", "postgress://u:hunter2@h/db", "count"]).await;
    assert_eq!(bad_url.status.code(), Some(2), "{}", stderr(&bad_url));
    assert!(
        stderr(&bad_url).contains("expected one of"),
        "{}",
        stderr(&bad_url)
    );
    assert!(!stderr(&bad_url).contains("hunter2"));

    let bad_target = admin(&["--store", "memory", "migrate", "--to", "foo://u:hunter2@h"]).await;
    assert_eq!(bad_target.status.code(), Some(2), "{}", stderr(&bad_target));
    assert!(
        !stderr(&bad_target).contains("hunter2"),
        "{}",
        stderr(&bad_target)
    );

    let no_command = admin(&["--store", "memory"]).await;
    assert_eq!(no_command.status.code(), Some(2));

    let started = std::time::Instant::now();
    let refused = admin(&["--store", "redis://:hunter2@127.0.0.1:1", "count"]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        stderr(&refused).starts_with("session-admin: "),
        "{}",
        stderr(&refused)
    );
    assert!(
        !stderr(&refused).contains("hunter2"),
        "{}",
        stderr(&refused)
    );

    let bad_key = admin(&["--store", "memory", "destroy", "--key", "nothex"]).await;
    assert_eq!(bad_key.status.code(), Some(1));
    assert!(
        stderr(&bad_key).contains("invalid session key"),
        "{}",
        stderr(&bad_key)
    );

    let cookie = admin(&["--store", "cookie", "count"]).await;
    assert_eq!(cookie.status.code(), Some(1));
    assert!(stderr(&cookie).contains("browsers"), "{}", stderr(&cookie));

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.jsonl");
    let no_file = admin(&[
        "--store",
        "memory",
        "import",
        "--in",
        missing.to_str().unwrap(),
    ])
    .await;
    assert_eq!(no_file.status.code(), Some(1));
    assert!(
        stderr(&no_file).contains("nope.jsonl"),
        "{}",
        stderr(&no_file)
    );
}

/// Principals and namespaces through the binary: `list` shows who each
/// session belongs to, export/import and migrate keep it (the target's
/// index lists the sessions), `destroy --principal` signs a user out
/// everywhere (after a dry run), and `--namespace` picks the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_and_namespaces_through_the_binary() {
    use session_core::{Principal, PrincipalIndex};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let sqlite_url = format!("sqlite://{}", db.display());
    let (alice, bob) = (
        Principal::new("alice").unwrap(),
        Principal::new("bob").unwrap(),
    );
    {
        let tenant = SqliteStore::builder(&db)
            .with_namespace("tenant_a")
            .build()
            .await
            .unwrap();
        let owners = [
            Some(&alice),
            Some(&alice),
            Some(&alice),
            Some(&bob),
            None,
            None,
        ];
        for (i, owner) in owners.into_iter().enumerate() {
            let record = Record::new(object(json!({ "i": i })), Duration::from_secs(600))
                .with_principal(owner.cloned());
            tenant.save(&key(), &record).await.unwrap();
        }
        let default = SqliteStore::open(&db).await.unwrap();
        default
            .save(
                &key(),
                &Record::new(object(json!({})), Duration::from_secs(600)),
            )
            .await
            .unwrap();
    }
    let tenant = ["--store", sqlite_url.as_str(), "--namespace", "tenant_a"];
    let with = |args: &[&'static str]| -> Vec<String> {
        tenant.iter().chain(args).map(|a| (*a).to_owned()).collect()
    };
    assert_eq!(stdout(&admin_owned(&with(&["count"])).await).trim(), "6");
    assert_eq!(
        stdout(&admin(&["--store", &sqlite_url, "count"]).await).trim(),
        "1",
        "the default namespace is another table"
    );

    let table = stdout(&admin_owned(&with(&["list"])).await);
    assert!(
        table.lines().next().unwrap().ends_with("principal"),
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.ends_with("  alice")).count(),
        3,
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.ends_with("  -")).count(),
        2,
        "{table}"
    );
    let rows: Vec<serde_json::Value> = stdout(&admin_owned(&with(&["list", "--json"])).await)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.iter().filter(|r| r["principal"] == "bob").count(), 1);
    assert_eq!(rows.iter().filter(|r| r["principal"].is_null()).count(), 2);

    let export_file = dir.path().join("tenant.jsonl");
    let mut export_args = with(&["export", "--out"]);
    export_args.push(export_file.to_str().unwrap().to_owned());
    let exported = admin_owned(&export_args).await;
    assert!(exported.status.success(), "{}", stderr(&exported));
    let text = std::fs::read_to_string(&export_file).unwrap();
    assert_eq!(text.matches("\"principal\":\"alice\"").count(), 3, "{text}");

    let sled_dir = dir.path().join("sled");
    let sled_url = format!("sled://{}", sled_dir.display());
    let imported = admin(&[
        "--store",
        &sled_url,
        "--namespace",
        "imported",
        "import",
        "--in",
        export_file.to_str().unwrap(),
    ])
    .await;
    assert!(imported.status.success(), "{}", stderr(&imported));
    let files_dir = dir.path().join("files");
    let file_url = format!("file://{}", files_dir.display());
    let mut migrate_args = with(&["migrate", "--to"]);
    migrate_args.extend([
        file_url.clone(),
        "--to-namespace".to_owned(),
        "moved".to_owned(),
    ]);
    let migrated = admin_owned(&migrate_args).await;
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    {
        let sled = session_store_sled::SledStore::builder(&sled_dir)
            .with_namespace("imported")
            .build()
            .await
            .unwrap();
        assert_eq!(
            sled.sessions_of(&alice).await.unwrap().len(),
            3,
            "import keeps principals"
        );
        let files = session_store_file::FileStore::builder(&files_dir)
            .with_namespace("moved")
            .build()
            .await
            .unwrap();
        assert_eq!(
            files.sessions_of(&bob).await.unwrap().len(),
            1,
            "migrate keeps principals"
        );
    }

    let dry = admin_owned(&with(&["destroy", "--principal", "alice", "--dry-run"])).await;
    assert_eq!(
        stdout(&dry).trim(),
        "would destroy 3 live session(s) of alice"
    );
    assert_eq!(stdout(&admin_owned(&with(&["count"])).await).trim(), "6");
    let destroyed = admin_owned(&with(&["destroy", "--principal", "alice"])).await;
    assert_eq!(
        stdout(&destroyed).trim(),
        "destroyed 3 live session(s) of alice"
    );
    assert_eq!(stdout(&admin_owned(&with(&["count"])).await).trim(), "3");
    let both = admin_owned(&with(&["destroy", "--principal", "bob", "--key", "00"])).await;
    assert_eq!(
        both.status.code(),
        Some(2),
        "--key and --principal together: {}",
        stderr(&both)
    );
    let bad = admin_owned(&with(&["destroy", "--principal", ""])).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("invalid principal"),
        "{}",
        stderr(&bad)
    );
}
