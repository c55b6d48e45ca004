//! The database lost and found again under a chat load (PostgreSQL, reached through a proxy
//! the test cuts): meanwhile `/ready` is 503 and sends are answered `UNAVAILABLE` (or wait
//! and succeed), never left without an answer; the server recovers without a restart; and
//! after clients resend what failed with the same `clientId` (the recipe the README gives),
//! history holds every message exactly once, each with its attachment — nothing half-written.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::future::join_all;
use lyceum_tests::{
    Backend, TestServer,
    chat::{connect, messages_path, post_message, room_of},
    check::id_of,
    files::{part, upload_form},
    proxy::{TcpProxy, redirect_url, target_of},
};
use reqwest::multipart::Form;
use serde_json::{Value, json};

use crate::support::*;

/// Socket senders, each sending this many messages one after another.
const SENDERS: usize = 4;
const PER_SENDER: usize = 60;
/// REST sends.
const POSTS: usize = 60;
/// How long a send may take to be answered, the pool's 5 s wait for a connection included.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// What one send was answered: the stored message's id, or the error code.
type Outcome = Result<String, String>;

fn outcome_of_ack(ack: &Value) -> Outcome {
    if ack["ok"] == true {
        Ok(id_of(&ack["message"]).to_owned())
    } else {
        Err(ack["error"]["code"].as_str().unwrap_or("?").to_owned())
    }
}

/// A small PDF uploaded by `who`; its id.
async fn slides(srv: &TestServer, who: &lyceum_tests::Account) -> String {
    let pdf = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n";
    let reply = upload_form(
        srv,
        who,
        "",
        Form::new().part("file", part("slides.pdf", pdf, "application/pdf")),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    id_of(&reply.data()).to_owned()
}

async fn ready_status(srv: &TestServer) -> u16 {
    srv.client().get("/ready").await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_lost_under_load_answers_unavailable_recovers_and_loses_nothing_acked() {
    if lyceum_tests::skip_without_postgres(
        "a_database_lost_under_load_answers_unavailable_recovers_and_loses_nothing_acked",
    ) {
        return;
    }
    let proxy = TcpProxy::start(target_of(&lyceum_tests::postgres_url().unwrap())).await;
    let srv = start_adjusted(Backend::Postgres, |c| {
        let url = c.database_url.as_ref().unwrap().expose().to_owned();
        c.database_url = Some(lyceum::config::Secret::new(redirect_url(&url, proxy.addr)));
        c.chat_rate_per_second = 100_000.0;
        c.chat_rate_burst = 100_000;
    })
    .await;
    let (_, course) = srv.course().await;
    let room = room_of(&course);
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    srv.enroll(&ada, &course).await;
    srv.enroll(&bob, &course).await;
    let ada_slides = slides(&srv, &ada).await;
    let bob_slides = slides(&srv, &bob).await;
    let socket = Arc::new(connect(&srv, &ada).await);
    join(&socket, &room).await;

    // Every fifth message carries its sender's slides: a message and its attachment are one
    // write. REST sends name the room in the path.
    let message = |client_id: &str, i: usize| {
        let over_rest = client_id.starts_with("rest-");
        let mut body = json!({ "content": client_id, "clientId": client_id });
        if !over_rest {
            body["roomId"] = json!(room);
        }
        if i.is_multiple_of(5) {
            body["attachments"] = json!([if over_rest { &bob_slides } else { &ada_slides }]);
        }
        body
    };
    let lost = Arc::new(AtomicBool::new(false));
    let sent_while_lost = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let socket_senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (socket, lost, sent_while_lost) =
                (socket.clone(), lost.clone(), sent_while_lost.clone());
            let bodies: Vec<(String, Value)> = (0..PER_SENDER)
                .map(|i| {
                    let id = format!("socket-{s}-{i}");
                    let body = message(&id, i);
                    (id, body)
                })
                .collect();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for (id, body) in bodies {
                    if lost.load(Ordering::SeqCst) {
                        sent_while_lost.fetch_add(1, Ordering::SeqCst);
                    }
                    let ack = socket
                        .try_emit_ack("chat:send_message", body, ANSWER_WITHIN)
                        .await
                        .unwrap_or_else(|| panic!("{id} was never answered"));
                    outcomes.push((id, outcome_of_ack(&ack)));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                outcomes
            })
        })
        .collect();
    let rest_sender = {
        let (srv_addr, token, room, lost, sent_while_lost) = (
            srv.addr,
            bob.token.clone(),
            room.clone(),
            lost.clone(),
            sent_while_lost.clone(),
        );
        let client = lyceum_tests::Client::new(srv_addr).bearer(&token);
        let bodies: Vec<(String, Value)> = (0..POSTS)
            .map(|i| {
                let id = format!("rest-{i}");
                let body = message(&id, i);
                (id, body)
            })
            .collect();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for (id, body) in bodies {
                if lost.load(Ordering::SeqCst) {
                    sent_while_lost.fetch_add(1, Ordering::SeqCst);
                }
                let reply =
                    tokio::time::timeout(ANSWER_WITHIN, client.post(&messages_path(&room), body))
                        .await
                        .unwrap_or_else(|_| panic!("{id} was never answered"));
                let outcome = if reply.status == 201 {
                    Ok(id_of(&reply.data()).to_owned())
                } else {
                    Err(reply.code().to_owned())
                };
                outcomes.push((id, outcome));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            outcomes
        })
    };
    let senders = tokio::spawn(async move {
        let mut all: Vec<(String, Outcome)> = join_all(socket_senders)
            .await
            .into_iter()
            .flat_map(|r| r.unwrap())
            .collect();
        all.extend(rest_sender.await.unwrap());
        all
    });

    // The database goes away a moment into the load, for about a second.
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut().await;
    lost.store(true, Ordering::SeqCst);
    let mut not_ready = false;
    for _ in 0..50 {
        if ready_status(&srv).await == 503 {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(not_ready, "/ready kept answering 200 without a database");
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.restore();
    lost.store(false, Ordering::SeqCst);
    let mut recovered = false;
    for _ in 0..150 {
        if ready_status(&srv).await == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "the server did not recover when the database came back"
    );

    let outcomes = senders.await.unwrap();
    assert_eq!(outcomes.len(), SENDERS * PER_SENDER + POSTS);
    assert!(
        sent_while_lost.load(Ordering::SeqCst) > 0,
        "no send happened while the database was away"
    );
    let failed: Vec<&(String, Outcome)> = outcomes.iter().filter(|(_, o)| o.is_err()).collect();
    for (id, outcome) in &failed {
        assert_eq!(
            outcome.as_ref().unwrap_err(),
            "UNAVAILABLE",
            "{id} failed with another code"
        );
    }
    eprintln!(
        "{} of {} sends were answered UNAVAILABLE while the database was away",
        failed.len(),
        outcomes.len()
    );

    // Clients resend what failed, with the same clientId.
    let mut acked: HashMap<String, String> = outcomes
        .iter()
        .filter_map(|(id, o)| o.as_ref().ok().map(|m| (id.clone(), m.clone())))
        .collect();
    for (id, _) in &failed {
        let i: usize = id.rsplit('-').next().unwrap().parse().unwrap();
        let stored = if id.starts_with("rest-") {
            let reply = post_message(&srv, &bob, &room, message(id, i)).await;
            assert!(matches!(reply.status, 200 | 201), "{id}: {}", reply.body);
            id_of(&reply.data()).to_owned()
        } else {
            let ack = socket.emit_ack("chat:send_message", message(id, i)).await;
            outcome_of_ack(&ack).unwrap_or_else(|code| panic!("{id} resent: {code}"))
        };
        acked.insert(id.clone(), stored);
    }

    // History: every message once, under the id its sender was given, with its attachment.
    let stored = history(&srv, &ada, &room).await;
    let mut seen: HashMap<String, &Value> = HashMap::new();
    for message in &stored {
        let client_id = message["clientId"].as_str().expect("clientId").to_owned();
        assert!(
            seen.insert(client_id.clone(), message).is_none(),
            "{client_id} is stored twice"
        );
    }
    assert_eq!(seen.len(), acked.len(), "history and acks differ in size");
    for (client_id, id) in &acked {
        let message = seen
            .get(client_id)
            .unwrap_or_else(|| panic!("acked {client_id} is missing from history"));
        assert_eq!(id_of(message), id, "{client_id} is stored under another id");
        let i: usize = client_id.rsplit('-').next().unwrap().parse().unwrap();
        let attachments = message["attachments"].as_array().expect("attachments");
        let expected = usize::from(i.is_multiple_of(5));
        assert_eq!(attachments.len(), expected, "{client_id}: {attachments:?}");
    }
}
