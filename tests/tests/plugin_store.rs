//! Persistence of the plugin admin platform, straight against the store on each backend:
//! uploaded modules, the numbered revisions of each slot's chain, and the decision audit.

use std::{collections::BTreeSet, sync::Arc};

use chrono::{DateTime, Duration, TimeZone, Utc};
use lyceum::{
    domain::{
        DecisionQuery, NewPluginRevision, PluginDecision, PluginModule, PluginRevision, Role, User,
        UserId, now,
    },
    store::{Store, StoreError},
};
use lyceum_tests::{Backend, TestStore, backend_tests};
use serde_json::{Value, json};
use uuid::Uuid;

backend_tests!(
    a_module_is_recorded_once_per_sha256,
    modules_list_newest_first,
    revisions_are_numbered_per_slot,
    concurrent_revisions_get_distinct_numbers,
    a_revision_reads_back_as_written,
    latest_revision_overall_and_from_a_source,
    revisions_page_newest_first_with_a_cursor,
    a_rollback_must_restore_an_existing_revision,
    referenced_modules_are_every_uploaded_module_a_chain_names,
    decisions_read_back_as_written,
    decisions_filter_alone_and_combined,
    decisions_filter_by_a_half_open_time_window,
    decisions_page_newest_first_with_a_cursor,
    a_large_decision_batch_is_stored_whole,
    a_retried_decision_batch_stores_nothing_twice,
    decisions_are_pruned_by_time,
    migrations_upgrade_a_database_from_the_first_schema,
);

fn sha(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn module(n: u8, created_at: DateTime<Utc>) -> PluginModule {
    PluginModule {
        sha256: sha(n),
        name: format!("moderator-{n}"),
        abi: "component".into(),
        world: "chat-moderation".into(),
        wit_version: "0.1.0".into(),
        size: 5_000_000_000 + u64::from(n),
        created_at,
    }
}

fn chain_of(modules: &[&str]) -> Value {
    Value::Array(
        modules
            .iter()
            .map(|m| json!({"module": m, "config": {"words": ["spam"]}}))
            .collect(),
    )
}

fn change(slot: &str, source: &str, chain: Value) -> NewPluginRevision {
    NewPluginRevision {
        slot: slot.into(),
        activated_by: (source != "file").then(UserId::new),
        source: source.into(),
        failure: "fail-closed".into(),
        chain,
        restored_from: None,
    }
}

async fn record(store: &dyn Store, slot: &str, source: &str) -> PluginRevision {
    store
        .insert_plugin_revision(
            &change(slot, source, chain_of(&["builtin:chat-moderation"])),
            now(),
        )
        .await
        .expect("revision stored")
}

fn numbers(revisions: &[PluginRevision]) -> Vec<i64> {
    revisions.iter().map(|r| r.revision).collect()
}

async fn a_module_is_recorded_once_per_sha256(backend: Backend) {
    let store = TestStore::open(backend).await;
    let first = module(1, now());
    assert!(store.insert_plugin_module(&first).await.unwrap());

    let mut again = module(1, now() + Duration::seconds(5));
    again.name = "renamed".into();
    assert!(
        !store.insert_plugin_module(&again).await.unwrap(),
        "the same bytes uploaded twice are already known"
    );

    assert_eq!(
        store.plugin_module(&sha(1)).await.unwrap(),
        Some(first),
        "the first record is kept, sizes past 32 bits included"
    );
    assert_eq!(store.plugin_module(&sha(2)).await.unwrap(), None);
}

async fn modules_list_newest_first(backend: Backend) {
    let store = TestStore::open(backend).await;
    let start = now();
    for (n, minutes) in [(1, 0), (2, 2), (3, 1)] {
        store
            .insert_plugin_module(&module(n, start + Duration::minutes(minutes)))
            .await
            .unwrap();
    }
    let listed: Vec<String> = store
        .plugin_modules()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.sha256)
        .collect();
    assert_eq!(listed, [sha(2), sha(3), sha(1)]);
}

async fn revisions_are_numbered_per_slot(backend: Backend) {
    let store = TestStore::open(backend).await;
    assert_eq!(record(&*store, "chat", "api").await.revision, 1);
    assert_eq!(record(&*store, "chat", "api").await.revision, 2);
    assert_eq!(
        record(&*store, "files", "file").await.revision,
        1,
        "each slot counts on its own"
    );
    assert_eq!(record(&*store, "chat", "promote").await.revision, 3);
    assert_eq!(record(&*store, "signaling", "api").await.revision, 1);
    assert_eq!(record(&*store, "files", "api").await.revision, 2);
}

async fn concurrent_revisions_get_distinct_numbers(backend: Backend) {
    let store = TestStore::open(backend).await;
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let store: Arc<dyn Store> = store.store.clone();
            tokio::spawn(async move {
                store
                    .insert_plugin_revision(
                        &change("chat", "api", chain_of(&["builtin:chat-moderation"])),
                        now(),
                    )
                    .await
                    .expect("every writer gets a number")
                    .revision
            })
        })
        .collect();
    let mut got = Vec::new();
    for writer in writers {
        got.push(writer.await.unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (1..=8).collect::<Vec<i64>>());
    assert_eq!(
        store
            .latest_plugin_revision("chat")
            .await
            .unwrap()
            .unwrap()
            .revision,
        8
    );
}

async fn a_revision_reads_back_as_written(backend: Backend) {
    let store = TestStore::open(backend).await;
    // Key order is the order the admin wrote the links in, not alphabetical.
    let chain = json!([
        {"module": sha(7), "name": "wordlist", "failure": "fail-open",
         "limits": {"deadlineMs": 5, "fuel": 1000000}, "config": {"z": 1, "a": 2}},
        {"module": "builtin:chat-moderation"}
    ]);
    let admin = UserId::new();
    let at = now();
    let new = NewPluginRevision {
        slot: "chat".into(),
        activated_by: Some(admin),
        source: "api".into(),
        failure: "fail-open".into(),
        chain: chain.clone(),
        restored_from: None,
    };
    let stored = store.insert_plugin_revision(&new, at).await.unwrap();
    let expected = PluginRevision {
        slot: "chat".into(),
        revision: 1,
        activated_at: at,
        activated_by: Some(admin),
        source: "api".into(),
        failure: "fail-open".into(),
        chain: chain.clone(),
        restored_from: None,
    };
    assert_eq!(stored, expected);
    let read = store.plugin_revision("chat", 1).await.unwrap().unwrap();
    assert_eq!(read, expected);
    assert_eq!(
        serde_json::to_string(&read.chain).unwrap(),
        serde_json::to_string(&chain).unwrap(),
        "the links keep their key order"
    );
    assert_eq!(store.plugin_revision("chat", 2).await.unwrap(), None);
    assert_eq!(store.plugin_revision("files", 1).await.unwrap(), None);
}

async fn latest_revision_overall_and_from_a_source(backend: Backend) {
    let store = TestStore::open(backend).await;
    assert_eq!(store.latest_plugin_revision("chat").await.unwrap(), None);
    assert_eq!(
        store
            .latest_plugin_revision_from("chat", "file")
            .await
            .unwrap(),
        None
    );

    record(&*store, "chat", "file").await;
    record(&*store, "chat", "api").await;
    let from_file = record(&*store, "chat", "file").await;
    record(&*store, "chat", "api").await;
    record(&*store, "chat", "rollback").await;
    record(&*store, "files", "file").await;

    let latest = store.latest_plugin_revision("chat").await.unwrap().unwrap();
    assert_eq!((latest.revision, latest.source.as_str()), (5, "rollback"));
    let latest_file = store
        .latest_plugin_revision_from("chat", "file")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest_file, from_file);
    assert_eq!(latest_file.revision, 3);
    assert_eq!(latest_file.activated_by, None);
    assert_eq!(
        store
            .latest_plugin_revision_from("chat", "promote")
            .await
            .unwrap(),
        None
    );
}

async fn revisions_page_newest_first_with_a_cursor(backend: Backend) {
    let store = TestStore::open(backend).await;
    for _ in 0..5 {
        record(&*store, "signaling", "api").await;
    }
    record(&*store, "chat", "api").await;

    let first = store.plugin_revisions("signaling", None, 2).await.unwrap();
    assert_eq!(numbers(&first), [5, 4]);
    let second = store
        .plugin_revisions("signaling", Some(4), 2)
        .await
        .unwrap();
    assert_eq!(numbers(&second), [3, 2]);
    let last = store
        .plugin_revisions("signaling", Some(2), 2)
        .await
        .unwrap();
    assert_eq!(numbers(&last), [1]);
    assert!(
        store
            .plugin_revisions("signaling", Some(1), 2)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        numbers(&store.plugin_revisions("chat", None, 50).await.unwrap()),
        [1]
    );
}

async fn a_rollback_must_restore_an_existing_revision(backend: Backend) {
    let store = TestStore::open(backend).await;
    let first = store
        .insert_plugin_revision(&change("chat", "api", chain_of(&[&sha(1)])), now())
        .await
        .unwrap();
    record(&*store, "chat", "api").await;

    let rollback = NewPluginRevision {
        restored_from: Some(first.revision),
        ..change("chat", "rollback", first.chain.clone())
    };
    let restored = store
        .insert_plugin_revision(&rollback, now())
        .await
        .unwrap();
    assert_eq!(restored.revision, 3);
    assert_eq!(restored.restored_from, Some(1));
    assert_eq!(restored.chain, first.chain);

    let dangling = NewPluginRevision {
        restored_from: Some(9),
        ..change("chat", "rollback", first.chain.clone())
    };
    assert!(matches!(
        store.insert_plugin_revision(&dangling, now()).await,
        Err(StoreError::NotFound)
    ));
    let other_slot = NewPluginRevision {
        restored_from: Some(1),
        ..change("files", "rollback", first.chain)
    };
    assert!(
        matches!(
            store.insert_plugin_revision(&other_slot, now()).await,
            Err(StoreError::NotFound)
        ),
        "a revision number is only meaningful within its own slot"
    );
    assert_eq!(
        store
            .latest_plugin_revision("chat")
            .await
            .unwrap()
            .unwrap()
            .revision,
        3
    );
}

async fn referenced_modules_are_every_uploaded_module_a_chain_names(backend: Backend) {
    let store = TestStore::open(backend).await;
    assert!(store.referenced_plugin_modules().await.unwrap().is_empty());

    let (a, b, c) = (sha(0xa), sha(0xb), sha(0xc));
    for (slot, chain) in [
        ("chat", chain_of(&[&b, "builtin:chat-moderation"])),
        ("chat", chain_of(&["builtin:chat-moderation"])),
        ("files", chain_of(&[&a, &b])),
        ("signaling", chain_of(&[&c])),
        ("signaling", chain_of(&["builtin:signaling-policy"])),
    ] {
        store
            .insert_plugin_revision(&change(slot, "api", chain), now())
            .await
            .unwrap();
    }
    assert_eq!(
        store.referenced_plugin_modules().await.unwrap(),
        [a, b, c],
        "old revisions count too (they can be rolled back to); built-ins have no bytes"
    );
}

fn time(minute: i64, micros: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
        + Duration::minutes(minute)
        + Duration::microseconds(micros)
}

fn decision(
    slot: &str,
    verdict: &str,
    plugin: u8,
    shadow: bool,
    at: DateTime<Utc>,
) -> PluginDecision {
    PluginDecision {
        id: Uuid::now_v7(),
        at,
        slot: slot.into(),
        plugin_name: format!("plugin-{plugin}"),
        plugin_sha256: sha(plugin),
        verdict: verdict.into(),
        reason: None,
        shadow,
        actor_id: Some(Uuid::now_v7().to_string()),
        course_id: None,
        room_id: None,
        session_id: None,
        subject_id: None,
        request_id: Uuid::now_v7().to_string(),
        content_sha256: None,
    }
}

/// Eight decisions, one a minute in id order, covering each filter's values.
async fn audit(store: &dyn Store) -> Vec<PluginDecision> {
    let decisions = vec![
        decision("chat", "reject", 1, false, time(0, 0)),
        decision("chat", "flag", 1, true, time(1, 0)),
        decision("files", "deny", 2, false, time(2, 500_000)),
        decision("chat", "reject", 2, false, time(3, 1)),
        decision("signaling", "drop", 3, false, time(4, 0)),
        decision("chat", "reject", 1, true, time(5, 999_999)),
        decision("files", "timeout", 2, true, time(6, 0)),
        decision("chat", "rewrite", 3, false, time(7, 0)),
    ];
    store.insert_plugin_decisions(&decisions).await.unwrap();
    decisions
}

/// Positions (in the order recorded) of the decisions a query returns, newest first.
async fn found(store: &dyn Store, all: &[PluginDecision], query: DecisionQuery) -> Vec<usize> {
    let query = DecisionQuery {
        limit: 100,
        ..query
    };
    store
        .plugin_decisions(&query)
        .await
        .unwrap()
        .iter()
        .map(|d| {
            all.iter()
                .position(|a| a.id == d.id)
                .expect("a recorded decision")
        })
        .collect()
}

async fn decisions_read_back_as_written(backend: Backend) {
    let store = TestStore::open(backend).await;
    let full = PluginDecision {
        reason: Some("banned word".into()),
        course_id: Some(Uuid::now_v7().to_string()),
        room_id: Some(Uuid::now_v7().to_string()),
        session_id: Some(Uuid::now_v7().to_string()),
        subject_id: Some(Uuid::now_v7().to_string()),
        content_sha256: Some(sha(0xee)),
        ..decision("chat", "reject", 1, true, now())
    };
    let bare = PluginDecision {
        actor_id: None,
        ..decision("signaling", "fail-open", 2, false, now())
    };
    store
        .insert_plugin_decisions(&[full.clone(), bare.clone()])
        .await
        .unwrap();
    let read = store
        .plugin_decisions(&DecisionQuery {
            limit: 10,
            ..DecisionQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(read, [bare, full]);
}

async fn decisions_filter_alone_and_combined(backend: Backend) {
    let store = TestStore::open(backend).await;
    let all = audit(&*store).await;
    let q = DecisionQuery::default;

    assert_eq!(found(&*store, &all, q()).await, [7, 6, 5, 4, 3, 2, 1, 0]);
    let slot = |s: &str| Some(s.to_owned());
    assert_eq!(
        found(
            &*store,
            &all,
            DecisionQuery {
                slot: slot("chat"),
                ..q()
            }
        )
        .await,
        [7, 5, 3, 1, 0]
    );
    assert_eq!(
        found(
            &*store,
            &all,
            DecisionQuery {
                verdict: slot("reject"),
                ..q()
            }
        )
        .await,
        [5, 3, 0]
    );
    assert_eq!(
        found(
            &*store,
            &all,
            DecisionQuery {
                plugin_sha256: Some(sha(2)),
                ..q()
            }
        )
        .await,
        [6, 3, 2]
    );
    assert_eq!(
        found(
            &*store,
            &all,
            DecisionQuery {
                shadow: Some(true),
                ..q()
            }
        )
        .await,
        [6, 5, 1]
    );
    assert_eq!(
        found(
            &*store,
            &all,
            DecisionQuery {
                shadow: Some(false),
                ..q()
            }
        )
        .await,
        [7, 4, 3, 2, 0]
    );

    assert_eq!(
        found(
            &*store,
            &all,
            DecisionQuery {
                slot: slot("chat"),
                verdict: slot("reject"),
                ..q()
            }
        )
        .await,
        [5, 3, 0]
    );
    assert_eq!(
        found(
            &*store,
            &all,
            DecisionQuery {
                slot: slot("chat"),
                verdict: slot("reject"),
                plugin_sha256: Some(sha(1)),
                shadow: Some(false),
                ..q()
            }
        )
        .await,
        [0]
    );
    assert_eq!(
        found(
            &*store,
            &all,
            DecisionQuery {
                slot: slot("chat"),
                shadow: Some(true),
                since: Some(time(2, 0)),
                ..q()
            }
        )
        .await,
        [5]
    );
    assert!(
        found(
            &*store,
            &all,
            DecisionQuery {
                slot: slot("files"),
                verdict: slot("reject"),
                ..q()
            }
        )
        .await
        .is_empty()
    );
}

async fn decisions_filter_by_a_half_open_time_window(backend: Backend) {
    let store = TestStore::open(backend).await;
    let all = audit(&*store).await;
    let window = |since, until| DecisionQuery {
        since,
        until,
        ..DecisionQuery::default()
    };

    // Bounds fall on whole seconds and between microseconds alike: `since` is inclusive,
    // `until` exclusive.
    assert_eq!(
        found(&*store, &all, window(Some(time(3, 1)), None)).await,
        [7, 6, 5, 4, 3]
    );
    assert_eq!(
        found(&*store, &all, window(Some(time(3, 2)), None)).await,
        [7, 6, 5, 4]
    );
    assert_eq!(
        found(&*store, &all, window(None, Some(time(2, 500_000)))).await,
        [1, 0]
    );
    assert_eq!(
        found(&*store, &all, window(None, Some(time(2, 500_001)))).await,
        [2, 1, 0]
    );
    assert_eq!(
        found(&*store, &all, window(Some(time(2, 0)), Some(time(6, 0)))).await,
        [5, 4, 3, 2]
    );
    assert_eq!(
        found(
            &*store,
            &all,
            window(Some(time(5, 999_999)), Some(time(6, 0)))
        )
        .await,
        [5]
    );
}

async fn decisions_page_newest_first_with_a_cursor(backend: Backend) {
    let store = TestStore::open(backend).await;
    let all = audit(&*store).await;
    let chat_page = |before_id| DecisionQuery {
        slot: Some("chat".into()),
        before_id,
        limit: 2,
        ..DecisionQuery::default()
    };
    let position = |d: &PluginDecision| all.iter().position(|a| a.id == d.id).unwrap();

    let first = store.plugin_decisions(&chat_page(None)).await.unwrap();
    assert_eq!(first.iter().map(position).collect::<Vec<_>>(), [7, 5]);
    let second = store
        .plugin_decisions(&chat_page(Some(first[1].id)))
        .await
        .unwrap();
    assert_eq!(second.iter().map(position).collect::<Vec<_>>(), [3, 1]);
    let third = store
        .plugin_decisions(&chat_page(Some(second[1].id)))
        .await
        .unwrap();
    assert_eq!(third.iter().map(position).collect::<Vec<_>>(), [0]);
}

async fn a_large_decision_batch_is_stored_whole(backend: Backend) {
    let store = TestStore::open(backend).await;
    // More than one statement's worth of rows.
    let batch: Vec<PluginDecision> = (0..600)
        .map(|i| decision("chat", "flag", 1, i % 2 == 0, time(i, 0)))
        .collect();
    store.insert_plugin_decisions(&batch).await.unwrap();
    let read = store
        .plugin_decisions(&DecisionQuery {
            limit: 1000,
            ..DecisionQuery::default()
        })
        .await
        .unwrap();
    let mut expected = batch;
    expected.reverse();
    assert_eq!(read, expected);
}

async fn a_retried_decision_batch_stores_nothing_twice(backend: Backend) {
    let store = TestStore::open(backend).await;
    let first = vec![
        decision("chat", "reject", 1, false, time(0, 0)),
        decision("chat", "flag", 1, false, time(1, 0)),
    ];
    store.insert_plugin_decisions(&first).await.unwrap();
    let retried = vec![
        first[1].clone(),
        decision("chat", "reject", 2, false, time(2, 0)),
    ];
    store.insert_plugin_decisions(&retried).await.unwrap();
    let read = store
        .plugin_decisions(&DecisionQuery {
            limit: 10,
            ..DecisionQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        read,
        [retried[1].clone(), first[1].clone(), first[0].clone()]
    );
}

async fn decisions_are_pruned_by_time(backend: Backend) {
    let store = TestStore::open(backend).await;
    let all = audit(&*store).await;

    assert_eq!(store.prune_plugin_decisions(time(0, 0)).await.unwrap(), 0);
    assert_eq!(
        store.prune_plugin_decisions(time(3, 1)).await.unwrap(),
        3,
        "strictly older than the bound"
    );
    assert_eq!(
        found(&*store, &all, DecisionQuery::default()).await,
        [7, 6, 5, 4, 3]
    );
    assert_eq!(store.prune_plugin_decisions(time(3, 1)).await.unwrap(), 0);
    assert_eq!(store.prune_plugin_decisions(time(60, 0)).await.unwrap(), 5);
    assert!(
        found(&*store, &all, DecisionQuery::default())
            .await
            .is_empty()
    );
}

/// A database created before plugins existed gains the tables added since (plugins, account
/// changes) on the next start and keeps its data.
async fn migrations_upgrade_a_database_from_the_first_schema(backend: Backend) {
    let store = TestStore::open(backend).await;
    let user = User {
        id: UserId::new(),
        email: "before-plugins@example.com".into(),
        name: "Before Plugins".into(),
        role: Role::Student,
        created_at: now(),
    };
    store.insert_user(&user, "hash").await.unwrap();

    // Take the database back to the first schema, then check that it is exactly that: a
    // migrator that knows only the first migration accepts it as up to date.
    let downgrade = "DROP TABLE account_changes;
                     DROP TABLE plugin_decisions;
                     DROP TABLE plugin_revisions;
                     DROP TABLE plugin_modules;
                     DELETE FROM _sqlx_migrations WHERE version > 1;";
    let dialect = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let first_only = lyceum_tests::tempdir::TempDir::new();
    std::fs::copy(
        format!(
            "{}/../migrations/{dialect}/0001_initial.sql",
            env!("CARGO_MANIFEST_DIR")
        ),
        first_only.path().join("0001_initial.sql"),
    )
    .unwrap();
    let first = sqlx::migrate::Migrator::new(first_only.path())
        .await
        .unwrap();
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&store.url).await.unwrap();
            sqlx::raw_sql(downgrade).execute(&pool).await.unwrap();
            first
                .run(&pool)
                .await
                .expect("the first schema, as released");
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&store.url).await.unwrap();
            sqlx::raw_sql(downgrade).execute(&pool).await.unwrap();
            first
                .run(&pool)
                .await
                .expect("the first schema, as released");
            pool.close().await;
        }
    }

    let upgraded = lyceum::store::connect(&store.url, 2)
        .await
        .expect("the later migrations apply to a first-schema database");
    assert_eq!(
        upgraded.user(user.id).await.unwrap().map(|u| u.email),
        Some(user.email),
        "data survives"
    );
    assert!(
        upgraded
            .insert_plugin_module(&module(1, now()))
            .await
            .unwrap()
    );
    assert_eq!(record(&*upgraded, "chat", "file").await.revision, 1);
}

#[test]
fn a_module_serialises_as_the_contract_module() {
    let created_at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    assert_eq!(
        serde_json::to_value(module(1, created_at)).unwrap(),
        json!({
            "sha256": sha(1),
            "name": "moderator-1",
            "abi": "component",
            "world": "chat-moderation",
            "witVersion": "0.1.0",
            "size": 5_000_000_001u64,
            "createdAt": "2026-03-01T12:00:00Z",
        })
    );
}

#[test]
fn a_revision_serialises_as_the_contract_revision() {
    let admin = UserId::new();
    let revision = PluginRevision {
        slot: "chat".into(),
        revision: 4,
        activated_at: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
        activated_by: Some(admin),
        source: "rollback".into(),
        failure: "fail-closed".into(),
        chain: chain_of(&["builtin:chat-moderation"]),
        restored_from: Some(2),
    };
    assert_eq!(
        serde_json::to_value(&revision).unwrap(),
        json!({
            "revision": 4,
            "activatedAt": "2026-03-01T12:00:00Z",
            "activatedBy": admin.to_string(),
            "source": "rollback",
            "failure": "fail-closed",
            "chain": [{"module": "builtin:chat-moderation", "config": {"words": ["spam"]}}],
            "restoredFrom": 2,
        })
    );
    let from_file = PluginRevision {
        activated_by: None,
        source: "file".into(),
        restored_from: None,
        ..revision
    };
    let json = serde_json::to_value(&from_file).unwrap();
    assert_eq!(json["activatedBy"], Value::Null);
    assert_eq!(json["restoredFrom"], Value::Null);
}

#[test]
fn a_decision_serialises_as_the_contract_decision() {
    let at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let bare = PluginDecision {
        actor_id: None,
        request_id: "req-1".into(),
        ..decision("chat", "reject", 1, false, at)
    };
    assert_eq!(
        serde_json::to_value(&bare).unwrap(),
        json!({
            "id": bare.id.to_string(),
            "at": "2026-03-01T12:00:00Z",
            "slot": "chat",
            "plugin": {"name": "plugin-1", "sha256": sha(1)},
            "verdict": "reject",
            "shadow": false,
            "actorId": null,
            "requestId": "req-1",
        }),
        "absent context is left out, except the actor, which is always there"
    );

    let full = PluginDecision {
        reason: Some("banned word".into()),
        actor_id: Some("u1".into()),
        course_id: Some("c1".into()),
        room_id: Some("r1".into()),
        session_id: Some("s1".into()),
        subject_id: Some("m1".into()),
        content_sha256: Some(sha(9)),
        shadow: true,
        ..bare.clone()
    };
    let json = serde_json::to_value(&full).unwrap();
    let keys: BTreeSet<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "id",
            "at",
            "slot",
            "plugin",
            "verdict",
            "reason",
            "shadow",
            "actorId",
            "courseId",
            "roomId",
            "sessionId",
            "subjectId",
            "requestId",
            "contentSha256",
        ])
    );
    assert_eq!(json["reason"], "banned word");
    assert_eq!(json["subjectId"], "m1");
    assert_eq!(json["contentSha256"], sha(9));
    assert_eq!(json["shadow"], true);
}
