//! The conformance suite and cluster-specific checks on a Redis Cluster.

mod common;

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::time::Duration;

use common::{Cluster, cluster, cluster_nodes, skip_cluster};
use session_core::{Cursor, Data, Error, Record, SessionId, SessionStore, SessionStoreExt};

session_conformance::conformance_suite!(Cluster);

/// The whole suite again through `Arc<dyn SessionStore>`.
mod dynamic {
    session_conformance::conformance_suite!(session_conformance::Dyn(crate::common::Cluster));
}

/// The `PrincipalIndex` behaviours.
mod principals {
    session_conformance::principal_index_suite!(crate::common::Cluster);
}

/// The `PrincipalIndex` behaviours through `Arc<dyn PrincipalIndex>`.
mod principals_dynamic {
    session_conformance::principal_index_suite!(session_conformance::DynIndex(
        crate::common::Cluster
    ));
}

#[tokio::test]
async fn scan_sees_every_key_on_every_primary() {
    if skip_cluster().is_some() {
        return;
    }
    let prefix = session_conformance::unique_namespace();
    let store = cluster(&prefix).await;
    let mut keys = HashSet::new();
    for i in 0..200 {
        let key = SessionId::generate().unwrap().key();
        let mut data = session_core::Data::new();
        data.insert("i".into(), i.into());
        assert!(
            store
                .create(&key, &Record::new(data, Duration::from_secs(600)))
                .await
                .unwrap()
        );
        keys.insert(key);
    }

    // The keys really are spread over several primaries.
    let client = redis::cluster::ClusterClient::new(cluster_nodes()).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let mut slots_nodes = HashSet::new();
    for key in &keys {
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(store.redis_key(key))
            .query_async(&mut conn)
            .await
            .unwrap();
        slots_nodes.insert(slot * 3 / 16384);
    }
    assert_eq!(
        slots_nodes.len(),
        3,
        "200 random keys fall into all thirds of the slot space"
    );

    assert_eq!(store.len().await.unwrap(), 200);
    let all = store.all().await.unwrap();
    assert_eq!(all.len(), 200);
    assert_eq!(all.iter().map(|(k, _)| *k).collect::<HashSet<_>>(), keys);

    store.clear().await.unwrap();
    assert_eq!(store.len().await.unwrap(), 0);
    assert!(store.is_empty().await.unwrap());
}

#[tokio::test]
async fn debug_names_the_cluster_nodes() {
    if skip_cluster().is_some() {
        return;
    }
    let store = cluster("dbg").await;
    let shown = format!("{store:?}");
    assert!(shown.contains("redis-cluster://127.0.0.1:"), "{shown}");
}

/// `list` walks the primaries in turn; a cursor naming a primary the
/// cluster does not have (three primaries: indexes 0 to 2, and 3 only
/// with keys left to read) is `Error::InvalidCursor`.
#[tokio::test]
async fn list_refuses_a_cursor_with_a_primary_out_of_range() {
    if skip_cluster().is_some() {
        return;
    }
    let store = cluster(&session_conformance::unique_namespace()).await;
    let key = SessionId::generate().unwrap().key();
    store
        .save(&key, &Record::new(Data::new(), Duration::from_secs(600)))
        .await
        .unwrap();
    let limit = NonZeroUsize::new(10).unwrap();
    for text in ["redis:3:0:", "redis:4:0:", "redis:3:7:", "redis:99:0:"] {
        match store.list(Some(&Cursor::new(text)), limit).await {
            Err(Error::InvalidCursor { .. }) => {}
            other => panic!("{text}: {other:?}"),
        }
    }
    // Each primary's index is valid: a listing from the start of primary
    // `n`'s SCAN goes on to the later primaries, so it finds the key iff
    // the key lives on one of primaries `n..`.
    let mut found = Vec::new();
    for node in 0..3 {
        let mut cursor = Some(Cursor::new(format!("redis:{node}:0:")));
        let mut n = 0;
        while let Some(at) = cursor {
            let page = store.list(Some(&at), limit).await.unwrap();
            n += page.records.len();
            cursor = page.next;
        }
        found.push(n);
    }
    assert_eq!(found[0], 1, "from the first primary: {found:?}");
    assert!(found.windows(2).all(|w| w[0] >= w[1]), "{found:?}");
    let cursor = Cursor::new(format!("redis:3:0:{}", key.as_str()));
    let page = store.list(Some(&cursor), limit).await.unwrap();
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.next, None);
    store.clear().await.unwrap();
}
