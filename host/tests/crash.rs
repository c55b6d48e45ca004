//! A server killed with SIGKILL in the middle of a burst of chat messages loses none that it
//! acknowledged: after a restart on the same database, history holds every acknowledged
//! message exactly once. On SQLite, and on PostgreSQL when `LYCEUM_TEST_DATABASE_URL` is set.
//!
//! Clients that were connected fetch what they missed with `GET …/messages` after they
//! reconnect: Socket.IO delivers at most once, the database is the record.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

mod support;

use support::{RemoveDirOnDrop, serve_in, temp_dir};

/// Clients sending at once, each one message after another, as fast as acks come back.
const SENDERS: usize = 8;
/// How long the burst runs before the kill.
const BURST: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_a_sigkill_on_sqlite() {
    acknowledged_messages_survive_a_sigkill(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_a_sigkill_on_postgres() {
    let Ok(base) = std::env::var("LYCEUM_TEST_DATABASE_URL") else {
        eprintln!("skipped: LYCEUM_TEST_DATABASE_URL is not set");
        return;
    };
    let url = fresh_schema(&base).await;
    acknowledged_messages_survive_a_sigkill(vec![("LYCEUM_DATABASE_URL", url)]).await;
}

async fn acknowledged_messages_survive_a_sigkill(mut env: Vec<(&'static str, String)>) {
    // One user sends the whole burst: the per-user chat rate is not what is tested here.
    env.push(("LYCEUM_CHAT_RATE_PER_SECOND", "1000000".to_owned()));
    env.push(("LYCEUM_CHAT_RATE_BURST", "1000000".to_owned()));
    let dir = temp_dir("crash");
    let _cleanup = RemoveDirOnDrop(dir.clone());
    let (mut server, addr) = serve_in(&dir, &env).unwrap();
    let client = reqwest::Client::new();
    let teacher = register_instructor(&client, &addr).await;
    let course = call(
        &client,
        &addr,
        &teacher,
        reqwest::Method::POST,
        "/api/v1/courses",
        Some(json!({"title": "Crash course"})),
    )
    .await
    .1;
    let room = course["data"]["roomId"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/chat/rooms/{room}/messages");

    // Each sender records the client ids the server acknowledged with 201.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (client, addr, token, path, acked) = (
                client.clone(),
                addr.clone(),
                teacher.clone(),
                path.clone(),
                acked.clone(),
            );
            tokio::spawn(async move {
                for n in 0.. {
                    let client_id = format!("s{sender}-{n}");
                    let body = json!({"content": format!("message {n} of {sender}"), "clientId": client_id});
                    let sent = client
                        .post(format!("http://{addr}{path}"))
                        .bearer_auth(&token)
                        .json(&body)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match sent {
                        Ok(reply) if reply.status() == 201 => acked.lock().unwrap().push(client_id),
                        Ok(reply) => panic!("send refused: {}", reply.status()),
                        // The server is gone: whatever was in flight was never acknowledged.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(BURST).await;
    let acked_before_kill = acked.lock().unwrap().len();
    server.0.kill().expect("SIGKILL");
    server.0.wait().unwrap();
    for sender in senders {
        sender.await.expect("a sender panicked");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked_before_kill >= 20,
        "only {acked_before_kill} messages were acknowledged before the kill: no burst to speak of"
    );

    let (_server, addr) = serve_in(&dir, &env).unwrap();
    let stored = history(&client, &addr, &teacher, &path).await;
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for message in &stored {
        *copies
            .entry(message["clientId"].as_str().expect("clientId"))
            .or_default() += 1;
    }
    let lost: Vec<_> = acked
        .iter()
        .filter(|id| !copies.contains_key(id.as_str()))
        .collect();
    let doubled: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "{} acknowledged, {} stored after the restart ({} in flight at the kill)",
        acked.len(),
        stored.len(),
        stored.len().saturating_sub(acked.len())
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(doubled.is_empty(), "stored more than once: {doubled:?}");
}

async fn register_instructor(client: &reqwest::Client, addr: &str) -> String {
    let (status, body) = call(
        client,
        addr,
        "",
        reqwest::Method::POST,
        "/api/v1/auth/register",
        Some(json!({
            "email": "teacher@example.com",
            "password": "correct horse battery",
            "name": "Teacher",
            "role": "instructor",
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["accessToken"].as_str().unwrap().to_owned()
}

/// Every message of the room, newest first, following the cursors.
async fn history(client: &reqwest::Client, addr: &str, token: &str, path: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut before: Option<String> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = match &before {
            None => format!("{path}?limit=100"),
            Some(id) => format!("{path}?limit=100&before={id}"),
        };
        let (status, body) = call(client, addr, token, reqwest::Method::GET, &page, None).await;
        assert_eq!(status, 200, "{body}");
        let items = body["data"]["items"].as_array().unwrap().clone();
        messages.extend(items);
        match body["data"]["nextCursor"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => return messages,
        }
        assert!(Instant::now() < deadline, "history did not end");
    }
}

async fn call(
    client: &reqwest::Client,
    addr: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, format!("http://{addr}{path}"));
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let reply = request.send().await.expect("request");
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

/// A new schema in the test database, and the URL that makes it the server's.
async fn fresh_schema(base: &str) -> String {
    let pool = sqlx::PgPool::connect(base)
        .await
        .unwrap_or_else(|e| panic!("LYCEUM_TEST_DATABASE_URL is set but unreachable: {e}"));
    let schema = format!("lyceum_crash_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .expect("create schema");
    pool.close().await;
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}
