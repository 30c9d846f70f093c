//! Two processes on one directory: this test binary runs itself again as
//! the ignored test `racing_process`, and both processes race versioned
//! updates of the same sessions and creates of the same keys, from the same
//! start instant. The shard locks are `flock`s, so no update may be lost
//! across processes (each session's final version is the number of updates
//! both processes saw applied, and every change is in it) and each key is
//! created exactly once. The updates and creates give the sessions to two
//! principals or to none, so both processes also move the same principal
//! markers: afterwards each principal's sessions are exactly those whose
//! file names it, and its markers those sessions.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use session_conformance::fixtures::{key, live, object};
use session_core::{Principal, PrincipalIndex, SessionKey, SessionStore, Timestamp, UpdateOutcome};
use session_store_file::FileStore;

const DIR_VAR: &str = "SESSION_FILE_RACE_DIR";
const START_VAR: &str = "SESSION_FILE_RACE_START";
const KEYS_VAR: &str = "SESSION_FILE_RACE_KEYS";
const CREATES_VAR: &str = "SESSION_FILE_RACE_CREATES";
/// Tasks per process, and successful updates per task.
const TASKS: usize = 16;
const UPDATES: usize = 24;
const TTL: Duration = Duration::from_secs(3600);
/// The principals the sessions are given to, in turn with none.
const PRINCIPALS: [&str; 2] = ["ada", "bob"];

/// The principal of the `n`th write of `task`: one of [`PRINCIPALS`], or
/// none.
fn principal_of(task: usize, n: usize) -> Option<Principal> {
    PRINCIPALS
        .get((task + n) % (PRINCIPALS.len() + 1))
        .map(|p| Principal::new(*p).unwrap())
}

/// What one process did: the fields its applied updates added, per key, and
/// the keys it created.
#[derive(Default)]
struct Report {
    fields: Vec<(String, String)>,
    created: Vec<(String, String)>,
}

/// What both processes race on: the parent passes it to the child in
/// environment variables.
struct Race {
    dir: String,
    /// Unix milliseconds.
    start: i64,
    /// Sessions both update.
    keys: Vec<SessionKey>,
    /// Keys both try to create.
    creates: Vec<SessionKey>,
}

impl Race {
    fn vars(&self) -> [(&'static str, String); 4] {
        let join = |keys: &[SessionKey]| {
            keys.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        [
            (DIR_VAR, self.dir.clone()),
            (START_VAR, self.start.to_string()),
            (KEYS_VAR, join(&self.keys)),
            (CREATES_VAR, join(&self.creates)),
        ]
    }

    fn from_env() -> Self {
        let var = |name| std::env::var(name).unwrap();
        let keys = |name| {
            var(name)
                .split(',')
                .map(|k| SessionKey::parse(k).unwrap())
                .collect()
        };
        Self {
            dir: var(DIR_VAR),
            start: var(START_VAR).parse().unwrap(),
            keys: keys(KEYS_VAR),
            creates: keys(CREATES_VAR),
        }
    }
}

/// The race itself, run by both processes: each task makes `UPDATES`
/// versioned updates (load, add its own field, update at the loaded
/// version, again on a conflict) and as many create attempts.
async fn race(label: &str, plan: &Race) -> Report {
    let store = FileStore::open(&plan.dir).await.unwrap();
    let wait = plan.start - Timestamp::now().as_millis();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
    }
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (store, keys, creates, label) = (
            store.clone(),
            plan.keys.clone(),
            plan.creates.clone(),
            label.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut report = Report::default();
            for n in 0..UPDATES {
                let k = keys[(task + n) % keys.len()];
                let field = format!("{label}-{task}-{n}");
                loop {
                    let old = store.load(&k).await.unwrap().expect("never destroyed");
                    let mut new = old.clone().with_principal(principal_of(task, n));
                    new.data.insert(field.clone(), json!(true));
                    match store.update(&k, &new, old.version).await.unwrap() {
                        UpdateOutcome::Updated => break,
                        UpdateOutcome::Conflict => tokio::task::yield_now().await,
                        other => panic!("update of a live session: {other:?}"),
                    }
                }
                report.fields.push((k.to_string(), field));
                let c = creates[(task * 7 + n) % creates.len()];
                let who = format!("{label}-{task}");
                let record = live(object(json!({ "by": who })), TTL)
                    .with_principal(principal_of(task, n + 1));
                if store.create(&c, &record).await.unwrap() {
                    report.created.push((c.to_string(), who));
                }
            }
            report
        }));
    }
    let mut all = Report::default();
    for task in tasks {
        let report = task.await.unwrap();
        all.fields.extend(report.fields);
        all.created.extend(report.created);
    }
    all
}

/// The second process: races, then prints what it did for the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of two_processes_lose_no_update_and_create_each_key_once, started by it"]
async fn racing_process() {
    assert!(
        std::env::var(DIR_VAR).is_ok(),
        "this is the child of two_processes_lose_no_update_and_create_each_key_once: run that test"
    );
    let report = race("child", &Race::from_env()).await;
    let mut out = String::new();
    for (k, field) in &report.fields {
        write!(out, "\nFIELD {k} {field}").unwrap();
    }
    for (k, who) in &report.created {
        write!(out, "\nCREATED {k} {who}").unwrap();
    }
    println!("{out}");
}

#[test]
fn two_processes_lose_no_update_and_create_each_key_once() {
    let root = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let keys: Vec<SessionKey> = (0..6).map(|_| key()).collect();
    let creates: Vec<SessionKey> = (0..40).map(|_| key()).collect();
    runtime.block_on(async {
        let store = FileStore::open(root.path()).await.unwrap();
        for k in &keys {
            assert!(
                store
                    .create(k, &live(object(json!({})), TTL))
                    .await
                    .unwrap()
            );
        }
    });
    // Both start at the same instant, well after the child is up.
    let plan = Race {
        dir: root.path().display().to_string(),
        start: Timestamp::now().as_millis() + 1_500,
        keys: keys.clone(),
        creates: creates.clone(),
    };
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["racing_process", "--exact", "--ignored", "--nocapture"])
        .envs(plan.vars())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let parent = runtime.block_on(race("parent", &plan));
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut fields: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut created: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut child_updates = 0;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("FIELD ") {
            let (k, field) = rest.split_once(' ').unwrap();
            fields
                .entry(k.to_owned())
                .or_default()
                .insert(field.to_owned());
            child_updates += 1;
        } else if let Some(rest) = line.strip_prefix("CREATED ") {
            let (k, who) = rest.split_once(' ').unwrap();
            created
                .entry(k.to_owned())
                .or_default()
                .push(who.to_owned());
        }
    }
    assert_eq!(
        child_updates,
        TASKS * UPDATES,
        "the child's report is incomplete"
    );
    for (k, field) in parent.fields {
        assert!(fields.entry(k).or_default().insert(field));
    }
    for (k, who) in parent.created {
        created.entry(k).or_default().push(who);
    }
    runtime.block_on(async {
        let store = FileStore::open(root.path()).await.unwrap();
        let mut total = 0;
        for k in &keys {
            let record = store.load(k).await.unwrap().unwrap();
            let applied = fields.remove(k.as_str()).unwrap_or_default();
            let stored: BTreeSet<String> = record.data.keys().cloned().collect();
            assert_eq!(
                record.version,
                applied.len() as u64,
                "a session's version is the number of updates applied to it"
            );
            assert_eq!(
                stored, applied,
                "every applied update's change is in the session"
            );
            total += record.version;
        }
        assert_eq!(total, 2 * (TASKS * UPDATES) as u64);
        for c in &creates {
            let winners = created.get(c.as_str()).cloned().unwrap_or_default();
            assert_eq!(winners.len(), 1, "{c} created by {winners:?}");
            let record = store.load(c).await.unwrap().unwrap();
            assert_eq!(
                record.data["by"],
                json!(winners[0]),
                "the creator's record stayed"
            );
        }
        for name in PRINCIPALS {
            let p = Principal::new(name).unwrap();
            let mut expected = Vec::new();
            for k in keys.iter().chain(&creates) {
                if store.load(k).await.unwrap().unwrap().principal.as_ref() == Some(&p) {
                    expected.push(*k);
                }
            }
            let mut found: Vec<SessionKey> = store
                .sessions_of(&p)
                .await
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            found.sort_unstable();
            expected.sort_unstable();
            assert_eq!(found, expected, "the sessions of {p}");
            assert_eq!(
                store.index_len(&p).await.unwrap(),
                expected.len() as u64,
                "the markers of {p}"
            );
        }
        let by_child = created
            .values()
            .filter(|w| w[0].starts_with("child"))
            .count();
        eprintln!(
            "{total} updates applied by two processes, {} keys created ({by_child} by the child)",
            creates.len()
        );
    });
}
