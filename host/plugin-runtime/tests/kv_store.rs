//! The in-memory key-value store behind the plugins' `kv` import.

use std::sync::Arc;
use std::time::Duration;

use lyceum_plugin_runtime::{KvError, KvStore, MemoryKv};

#[test]
fn incr_is_atomic_under_contention() {
    let kv = Arc::new(MemoryKv::new());
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let kv = kv.clone();
            scope.spawn(move || {
                for _ in 0..1000 {
                    kv.incr("ns", "counter", 1, Some(Duration::from_secs(60)))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(kv.get("ns", "counter").unwrap().as_deref(), Some("8000"));
}

#[test]
fn values_expire_and_incr_keeps_the_first_expiry() {
    let kv = MemoryKv::new();
    kv.set("ns", "note", "hello", Some(Duration::from_millis(40)))
        .unwrap();
    assert_eq!(kv.get("ns", "note").unwrap().as_deref(), Some("hello"));
    assert_eq!(
        kv.incr("ns", "window", 1, Some(Duration::from_millis(40)))
            .unwrap(),
        1
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        kv.incr("ns", "window", 1, Some(Duration::from_secs(60)))
            .unwrap(),
        2
    );
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(kv.get("ns", "note").unwrap(), None);
    assert_eq!(
        kv.incr("ns", "window", 5, None).unwrap(),
        5,
        "an expired counter starts over"
    );
    kv.set("ns", "forever", "x", None).unwrap();
    assert_eq!(kv.get("ns", "forever").unwrap().as_deref(), Some("x"));
}

#[test]
fn namespaces_are_separate_and_bounded() {
    let kv = MemoryKv::with_capacity(3);
    kv.set("a", "k", "from a", None).unwrap();
    kv.set("b", "k", "from b", None).unwrap();
    assert_eq!(kv.get("a", "k").unwrap().as_deref(), Some("from a"));
    assert_eq!(kv.get("b", "k").unwrap().as_deref(), Some("from b"));
    kv.set("a", "k2", "v", None).unwrap();
    kv.set("a", "k3", "v", Some(Duration::from_millis(10)))
        .unwrap();
    assert_eq!(kv.set("a", "k4", "v", None), Err(KvError::Full));
    assert_eq!(kv.incr("a", "k5", 1, None), Err(KvError::Full));
    kv.set("a", "k", "overwrite is fine", None).unwrap();
    kv.set("b", "k2", "b has room", None).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    kv.set("a", "k4", "room after expiry", None).unwrap();
}

#[test]
fn incr_on_text_is_invalid() {
    let kv = MemoryKv::new();
    kv.set("ns", "name", "alice", None).unwrap();
    assert!(matches!(
        kv.incr("ns", "name", 1, None),
        Err(KvError::Invalid(_))
    ));
}
