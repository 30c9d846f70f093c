//! The conformance suite and cluster-specific checks on a Redis Cluster.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Cluster, cluster, cluster_nodes, skip_cluster};
use session_core::{Record, SessionId, SessionStore, SessionStoreExt};

session_conformance::conformance_suite!(Cluster);

/// The whole suite again through `Arc<dyn SessionStore>`.
mod dynamic {
    session_conformance::conformance_suite!(session_conformance::Dyn(crate::common::Cluster));
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
