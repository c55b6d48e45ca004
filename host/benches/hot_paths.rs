//! Criterion microbenchmarks of what every chat message costs the server, piece by piece:
//! verifying an access token (every socket connect and HTTP request), encoding a message for
//! broadcast (once per message, whatever the room's size), and storing messages (one at a
//! time against group-committed batches, on SQLite in a file, as the server runs it).
//! The plugin call is measured by `cargo bench -p lyceum-plugin-runtime`.
//!
//! `cargo bench -p lyceum --bench hot_paths`. Numbers depend on the machine; compare runs
//! on one machine, and see BENCHMARKS.md for the method.

use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use lyceum::{
    domain::{Message, MessageId, Role, RoomId, TokenFamilyId, User, UserId, now},
    security::jwt::JwtKeys,
    store::{NewMessage, SqliteStore, Store},
};
use serde_json::json;

/// 100 bytes of ordinary chat, the size of the load tests' messages.
const CONTENT: &str =
    "See you all at nine tomorrow: bring chapter four, your notes and questions about lab 3!!";

fn message() -> Message {
    Message {
        id: MessageId::new(),
        room_id: RoomId::new(),
        sender_id: UserId::new(),
        sender_name: "Ada Lovelace".into(),
        content: CONTENT.into(),
        client_id: Some("c5f1a0e2b7d84c1e9f3a6b2d0e4c8a17".into()),
        reply_to: None,
        attachments: Vec::new(),
        flagged: false,
        created_at: now(),
        edited_at: None,
        deleted_at: None,
    }
}

fn tokens(c: &mut Criterion) {
    let keys = JwtKeys::new(
        b"bench-secret-that-is-long-enough-for-hs256",
        "lyceum",
        "lyceum-api",
        Duration::from_secs(900),
    );
    let token = keys
        .issue(UserId::new(), Role::Student, TokenFamilyId::new())
        .unwrap();
    c.bench_function("auth/verify_access_token", |b| {
        b.iter(|| keys.verify(black_box(&token)).unwrap())
    });
}

fn encode(c: &mut Criterion) {
    let message = message();
    // What the chat service and Socket.IO do once per message: the message as JSON, then the
    // event packet `42["chat:new_message",{...}]` that every receiver is sent as it is.
    c.bench_function("chat/encode_broadcast_packet", |b| {
        b.iter(|| {
            let value = json!(black_box(&message));
            let mut packet = String::with_capacity(512);
            packet.push_str("42");
            packet.push_str(&serde_json::to_string(&json!(["chat:new_message", value])).unwrap());
            packet
        })
    });
}

struct Db {
    store: Arc<dyn Store>,
    path: std::path::PathBuf,
}

impl Drop for Db {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let path = std::env::temp_dir().join(format!("lyceum-bench-{}.db", uuid::Uuid::now_v7()));
    let db = rt.block_on(async {
        let store = SqliteStore::connect(&format!("sqlite://{}?mode=rwc", path.display()), 4)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Db {
            store: Arc::new(store),
            path,
        }
    });
    let sender = UserId::new();
    rt.block_on(db.store.insert_user(
        &User {
            id: sender,
            email: "bench@example.com".into(),
            name: "Bench".into(),
            role: Role::Student,
            created_at: now(),
        },
        "not-a-hash",
    ))
    .unwrap();
    let room = RoomId::new();
    let new_message = || NewMessage {
        id: MessageId::new(),
        room_id: room,
        sender_id: sender,
        content: CONTENT.into(),
        client_id: Some(uuid::Uuid::now_v7().simple().to_string()),
        reply_to: None,
        flagged: false,
        created_at: now(),
        attachments: Vec::new(),
    };
    let mut group = c.benchmark_group("store/insert_messages");
    for size in [1usize, 16, 128, 512] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("batch_of_{size}"), |b| {
            b.iter_batched(
                || (0..size).map(|_| new_message()).collect::<Vec<_>>(),
                |batch| rt.block_on(db.store.insert_messages(&batch)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).sample_size(30);
    targets = tokens, encode, store
}
criterion_main!(hot_paths);
