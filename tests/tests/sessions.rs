//! Live sessions over REST and the ICE servers, per the "Courses, enrollments, live sessions"
//! section of the contract: scheduling, the scheduled → live → ended life cycle, who may see
//! and run a session, attendance lists, and TURN credentials.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use lyceum_tests::check::*;
use lyceum_tests::paging::{walk, walk_from};
use lyceum_tests::{Account, Backend, Reply, TestServer, backend_tests};
use serde_json::{Value, json};

backend_tests!(
    scheduling_a_session_answers_201_with_the_session,
    optional_session_fields_default_to_null,
    session_input_is_validated_field_by_field,
    only_the_course_instructor_or_an_admin_schedules_sessions,
    members_list_sessions_newest_first_and_paged_without_repeats_or_skips,
    session_list_paging_parameters_are_validated,
    non_members_are_forbidden_from_a_courses_sessions,
    members_read_one_session_and_unknown_ids_are_not_found,
    a_session_goes_scheduled_then_live_then_ended_and_never_back,
    a_scheduled_session_may_end_without_going_live,
    only_the_instructor_or_an_admin_starts_and_ends_a_session,
    concurrent_starts_let_exactly_one_through,
    participants_start_empty_and_are_for_members_only,
    session_endpoints_require_a_token,
    ice_servers_are_empty_by_default_and_need_a_token,
    ice_servers_hand_out_stun_and_short_lived_turn_credentials,
);

// ---------------------------------------------------------------------------------------------
// Helpers

const SESSION_KEYS: [&str; 9] = [
    "courseId",
    "endedAt",
    "id",
    "maxParticipants",
    "roomId",
    "scheduledAt",
    "startedAt",
    "status",
    "title",
];

/// Asserts `at` lies within a second of the window `[from, to]` (server and test share a clock).
#[track_caller]
fn assert_between(
    at: chrono::DateTime<chrono::Utc>,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) {
    let slack = chrono::Duration::seconds(1);
    assert!(
        at >= from - slack && at <= to + slack,
        "{at} is not between {from} and {to}"
    );
}

fn sessions_path(course: &Value) -> String {
    api(&format!("/courses/{}/sessions", id_of(course)))
}

fn session_path(session: &Value) -> String {
    api(&format!("/sessions/{}", id_of(session)))
}

async fn schedule(srv: &TestServer, by: &Account, course: &Value, body: Value) -> Reply {
    as_client(srv, by).post(&sessions_path(course), body).await
}

async fn new_session(srv: &TestServer, by: &Account, course: &Value, title: &str) -> Value {
    let reply = schedule(srv, by, course, json!({"title": title})).await;
    assert_eq!(reply.status, 201, "schedule: {}", reply.body);
    reply.data()
}

async fn start(srv: &TestServer, by: &Account, session: &Value) -> Reply {
    as_client(srv, by)
        .post(&format!("{}/start", session_path(session)), json!({}))
        .await
}

async fn end(srv: &TestServer, by: &Account, session: &Value) -> Reply {
    as_client(srv, by)
        .post(&format!("{}/end", session_path(session)), json!({}))
        .await
}

async fn read(srv: &TestServer, by: &Account, session: &Value) -> Value {
    let reply = as_client(srv, by).get(&session_path(session)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.data()
}

async fn session_ids(srv: &TestServer, by: &Account, course: &Value) -> Vec<String> {
    let reply = as_client(srv, by).get(&sessions_path(course)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let data = reply.data();
    assert_keys(&data, &["items", "nextCursor"]);
    ids(data["items"].as_array().unwrap())
}

// ---------------------------------------------------------------------------------------------
// Scheduling

async fn scheduling_a_session_answers_201_with_the_session(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let reply = schedule(
        &srv,
        &teacher,
        &course,
        // Any RFC 3339 offset is accepted; the answer is in UTC.
        json!({"title": "  Week 1: Lamport clocks ", "scheduledAt": "2030-05-06T09:08:09+02:00", "maxParticipants": 25}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let session = reply.data();
    assert_keys(&session, &SESSION_KEYS);
    assert_uuid_v7(&session["id"]);
    assert_uuid_v7(&session["roomId"]);
    assert_ne!(session["roomId"], session["id"]);
    assert_ne!(
        session["roomId"], course["roomId"],
        "the side chat is not the course's chat"
    );
    assert_eq!(session["courseId"], id_of(&course));
    assert_eq!(
        session["title"], "Week 1: Lamport clocks",
        "the title is trimmed"
    );
    assert_eq!(session["status"], "scheduled");
    assert_eq!(
        assert_utc_time(&session["scheduledAt"]),
        chrono::DateTime::parse_from_rfc3339("2030-05-06T07:08:09Z").unwrap()
    );
    assert_eq!(session["startedAt"], Value::Null);
    assert_eq!(session["endedAt"], Value::Null);
    assert_eq!(session["maxParticipants"], 25);

    // What was answered is what is stored, for every member.
    assert_eq!(read(&srv, &teacher, &session).await, session);
    let student = srv.register("student").await;
    srv.enroll(&student, &course).await;
    assert_eq!(read(&srv, &student, &session).await, session);

    // Sub-microsecond precision is not kept, but what is answered is what is stored.
    let precise = schedule(
        &srv,
        &teacher,
        &course,
        json!({"title": "Precise", "scheduledAt": "2030-05-06T09:08:09.123456789+02:00"}),
    )
    .await;
    assert_eq!(precise.status, 201, "{}", precise.body);
    let precise = precise.data();
    let at = assert_utc_time(&precise["scheduledAt"]);
    let asked = chrono::DateTime::parse_from_rfc3339("2030-05-06T07:08:09.123456789Z").unwrap();
    assert!(
        (at - asked.with_timezone(&chrono::Utc))
            .num_microseconds()
            .unwrap()
            .abs()
            < 1,
        "{at}"
    );
    assert_eq!(read(&srv, &teacher, &precise).await, precise);

    // A second session gets its own room; the bounds of maxParticipants are allowed.
    let one = schedule(
        &srv,
        &teacher,
        &course,
        json!({"title": "Office hour", "maxParticipants": 1}),
    )
    .await;
    assert_eq!(one.status, 201, "{}", one.body);
    let one = one.data();
    assert_eq!(one["maxParticipants"], 1);
    assert_ne!(one["roomId"], session["roomId"]);
    let many = schedule(
        &srv,
        &teacher,
        &course,
        json!({"title": "Keynote", "maxParticipants": 10_000}),
    )
    .await;
    assert_eq!(many.status, 201, "{}", many.body);
    assert_eq!(many.data()["maxParticipants"], 10_000);
    // 200 characters (counted in code points) is the longest title.
    let long = "é".repeat(200);
    let reply = schedule(&srv, &teacher, &course, json!({"title": long})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.data()["title"], long.as_str());
}

async fn optional_session_fields_default_to_null(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let reply = schedule(&srv, &teacher, &course, json!({"title": "Ad hoc"})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let session = reply.data();
    assert_keys(&session, &SESSION_KEYS);
    assert_eq!(session["status"], "scheduled");
    for key in ["scheduledAt", "startedAt", "endedAt", "maxParticipants"] {
        assert_eq!(session[key], Value::Null, "{key}");
    }
    let reply = schedule(
        &srv,
        &teacher,
        &course,
        json!({"title": "Explicit nulls", "scheduledAt": null, "maxParticipants": null}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let session = reply.data();
    assert_eq!(session["scheduledAt"], Value::Null);
    assert_eq!(session["maxParticipants"], Value::Null);
}

async fn session_input_is_validated_field_by_field(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let cases = [
        (json!({}), "title"),
        (json!({"maxParticipants": 5}), "title"),
        (json!({"title": null}), "title"),
        (json!({"title": ""}), "title"),
        (json!({"title": "  \n "}), "title"),
        (json!({"title": 3}), "title"),
        (json!({"title": "x".repeat(201)}), "title"),
        (json!({"title": "é".repeat(201)}), "title"),
        (
            json!({"title": "ok", "maxParticipants": 0}),
            "maxParticipants",
        ),
        (
            json!({"title": "ok", "maxParticipants": 10_001}),
            "maxParticipants",
        ),
        (
            json!({"title": "ok", "maxParticipants": -1}),
            "maxParticipants",
        ),
        (
            json!({"title": "ok", "maxParticipants": 2.5}),
            "maxParticipants",
        ),
        (
            json!({"title": "ok", "maxParticipants": "ten"}),
            "maxParticipants",
        ),
        (
            json!({"title": "ok", "maxParticipants": 4_294_967_297u64}),
            "maxParticipants",
        ),
        (
            json!({"title": "ok", "scheduledAt": "tomorrow"}),
            "scheduledAt",
        ),
        (
            json!({"title": "ok", "scheduledAt": "2030-05-06 09:08:09"}),
            "scheduledAt",
        ),
        (
            json!({"title": "ok", "scheduledAt": 1_900_000_000}),
            "scheduledAt",
        ),
    ];
    for (body, field) in cases {
        let reply = schedule(&srv, &teacher, &course, body.clone()).await;
        reply.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(reply.field(), field, "for {body}");
    }
    let client = as_client(&srv, &teacher);
    let reply = client
        .post_raw(
            &sessions_path(&course),
            "application/json",
            "{\"title\": \"x\"",
        )
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), "body");
    let reply = client
        .post_raw(&sessions_path(&course), "text/plain", "{\"title\": \"x\"}")
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), "body");

    // Nothing was scheduled.
    assert!(session_ids(&srv, &teacher, &course).await.is_empty());
}

async fn only_the_course_instructor_or_an_admin_schedules_sessions(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let student = srv.register("student").await;
    srv.enroll(&student, &course).await;
    let outsider = srv.register("student").await;
    let other_teacher = srv.register("instructor").await;
    let body = json!({"title": "Not yours"});

    for who in [&student, &outsider, &other_teacher] {
        schedule(&srv, who, &course, body.clone())
            .await
            .assert_error(403, "FORBIDDEN");
    }
    srv.client()
        .post(&sessions_path(&course), body.clone())
        .await
        .assert_error(401, "UNAUTHORIZED");
    assert!(
        session_ids(&srv, &teacher, &course).await.is_empty(),
        "nothing was scheduled"
    );

    // An admin may schedule in any course.
    let admin = srv.admin().await;
    let reply = schedule(&srv, &admin, &course, json!({"title": "Guest lecture"})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let session = reply.data();
    assert_eq!(session["courseId"], id_of(&course));
    assert_eq!(
        session_ids(&srv, &teacher, &course).await,
        vec![id_of(&session).to_owned()]
    );

    // Unknown or malformed courses are NOT_FOUND.
    for id in [UNKNOWN_ID, "not-a-course"] {
        as_client(&srv, &teacher)
            .post(
                &api(&format!("/courses/{id}/sessions")),
                json!({"title": "Lost"}),
            )
            .await
            .assert_error(404, "NOT_FOUND");
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

async fn members_list_sessions_newest_first_and_paged_without_repeats_or_skips(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let student = srv.register("student").await;
    srv.enroll(&student, &course).await;
    let admin = srv.admin().await;
    let mut created = Vec::new();
    for n in 1..=5 {
        created.push(new_session(&srv, &teacher, &course, &format!("Week {n}")).await);
    }
    let newest_first: Vec<String> = created.iter().rev().map(|s| id_of(s).to_owned()).collect();

    // A session of another course never shows up here.
    let (other_teacher, other_course) = srv.course().await;
    new_session(&srv, &other_teacher, &other_course, "Elsewhere").await;

    for who in [&teacher, &student, &admin] {
        let client = as_client(&srv, who);
        let reply = client.get(&sessions_path(&course)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let data = reply.data();
        assert_eq!(data["nextCursor"], Value::Null);
        let items = data["items"].as_array().unwrap();
        assert_eq!(ids(items), newest_first);
        for (item, original) in items.iter().zip(created.iter().rev()) {
            assert_eq!(item, original, "a listed session is the session");
        }

        let pages = walk(&client, &sessions_path(&course), 2).await;
        assert_eq!(
            pages.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        assert_eq!(ids(&pages.concat()), newest_first);
    }

    // A session scheduled mid-walk is newer than the cursor, so the walk carries on with the
    // older ones only.
    let client = as_client(&srv, &student);
    let first = client
        .get(&format!("{}?limit=2", sessions_path(&course)))
        .await
        .data();
    let cursor = first["nextCursor"].as_str().unwrap().to_owned();
    new_session(&srv, &teacher, &course, "Week 6").await;
    let rest = walk_from(&client, &sessions_path(&course), 2, Some(cursor)).await;
    assert_eq!(ids(&rest.concat()), newest_first[2..].to_vec());

    // The list shows each session's current state.
    assert_eq!(start(&srv, &teacher, &created[0]).await.status, 200);
    let listed = as_client(&srv, &student)
        .get(&sessions_path(&course))
        .await
        .data();
    let week1 = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == created[0]["id"])
        .unwrap()
        .clone();
    assert_eq!(week1["status"], "live");
}

async fn session_list_paging_parameters_are_validated(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let session = new_session(&srv, &teacher, &course, "Week 1").await;
    let client = as_client(&srv, &teacher);
    let participants = format!("{}/participants", session_path(&session));
    for base in [sessions_path(&course), participants] {
        for limit in ["0", "101", "-3", "many"] {
            let reply = client.get(&format!("{base}?limit={limit}")).await;
            reply.assert_error(400, "VALIDATION_FAILED");
            assert_eq!(reply.field(), "limit", "{base}?limit={limit}");
        }
        for cursor in ["%%%", "AAAA", "zzzz-zzzz"] {
            let reply = client.get(&format!("{base}?cursor={cursor}")).await;
            reply.assert_error(400, "VALIDATION_FAILED");
            assert_eq!(reply.field(), "cursor", "{base}?cursor={cursor}");
        }
        for limit in ["1", "100"] {
            let reply = client.get(&format!("{base}?limit={limit}")).await;
            assert_eq!(reply.status, 200, "{base}?limit={limit}: {}", reply.body);
        }
    }
}

async fn non_members_are_forbidden_from_a_courses_sessions(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let session = new_session(&srv, &teacher, &course, "Members only").await;
    let outsider = srv.register("student").await;
    let other_teacher = srv.register("instructor").await;
    // The other instructor's own course makes them a member of nothing here.
    let other_course = as_client(&srv, &other_teacher)
        .post(&api("/courses"), json!({"title": "Theirs"}))
        .await
        .data();
    assert_ne!(other_course["id"], course["id"]);

    for who in [&outsider, &other_teacher] {
        let client = as_client(&srv, who);
        client
            .get(&sessions_path(&course))
            .await
            .assert_error(403, "FORBIDDEN");
        client
            .get(&session_path(&session))
            .await
            .assert_error(403, "FORBIDDEN");
        client
            .get(&format!("{}/participants", session_path(&session)))
            .await
            .assert_error(403, "FORBIDDEN");
    }

    // An unknown course is NOT_FOUND, not FORBIDDEN, even to a non-member.
    for id in [UNKNOWN_ID, "zzz"] {
        as_client(&srv, &outsider)
            .get(&api(&format!("/courses/{id}/sessions")))
            .await
            .assert_error(404, "NOT_FOUND");
    }

    // Membership is what counts: enrolled, a student sees; unenrolled again, they do not.
    srv.enroll(&outsider, &course).await;
    assert_eq!(
        session_ids(&srv, &outsider, &course).await,
        vec![id_of(&session).to_owned()]
    );
    assert_eq!(read(&srv, &outsider, &session).await, session);
    let left = as_client(&srv, &outsider)
        .delete(&api(&format!(
            "/courses/{}/enrollments/{}",
            id_of(&course),
            outsider.id
        )))
        .await;
    assert_eq!(left.status, 200, "{}", left.body);
    let client = as_client(&srv, &outsider);
    client
        .get(&sessions_path(&course))
        .await
        .assert_error(403, "FORBIDDEN");
    client
        .get(&session_path(&session))
        .await
        .assert_error(403, "FORBIDDEN");
}

async fn members_read_one_session_and_unknown_ids_are_not_found(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let session = new_session(&srv, &teacher, &course, "Week 1").await;
    let student = srv.register("student").await;
    srv.enroll(&student, &course).await;
    let admin = srv.admin().await;
    for who in [&teacher, &student, &admin] {
        let got = read(&srv, who, &session).await;
        assert_keys(&got, &SESSION_KEYS);
        assert_eq!(got, session);
    }
    for id in [UNKNOWN_ID, "not-a-session", "1"] {
        let path = api(&format!("/sessions/{id}"));
        as_client(&srv, &admin)
            .get(&path)
            .await
            .assert_error(404, "NOT_FOUND");
        as_client(&srv, &student)
            .get(&path)
            .await
            .assert_error(404, "NOT_FOUND");
    }
    // A course id is not a session id.
    as_client(&srv, &teacher)
        .get(&api(&format!("/sessions/{}", id_of(&course))))
        .await
        .assert_error(404, "NOT_FOUND");
}

// ---------------------------------------------------------------------------------------------
// Life cycle

async fn a_session_goes_scheduled_then_live_then_ended_and_never_back(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let created = schedule(
        &srv,
        &teacher,
        &course,
        json!({"title": "Week 1", "scheduledAt": "2031-01-01T10:00:00Z", "maxParticipants": 30}),
    )
    .await
    .data();

    let before = chrono::Utc::now();
    let reply = start(&srv, &teacher, &created).await;
    let after = chrono::Utc::now();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let live = reply.data();
    assert_keys(&live, &SESSION_KEYS);
    assert_eq!(live["status"], "live");
    let started = assert_utc_time(&live["startedAt"]);
    assert_between(started, before, after);
    assert_eq!(live["endedAt"], Value::Null);
    for key in [
        "id",
        "courseId",
        "title",
        "scheduledAt",
        "maxParticipants",
        "roomId",
    ] {
        assert_eq!(live[key], created[key], "{key} does not change on start");
    }
    assert_eq!(read(&srv, &teacher, &created).await, live);

    // A live session cannot start again, and the refusal changes nothing.
    start(&srv, &teacher, &created)
        .await
        .assert_error(409, "CONFLICT");
    assert_eq!(read(&srv, &teacher, &created).await, live);

    let before = chrono::Utc::now();
    let reply = end(&srv, &teacher, &created).await;
    let after = chrono::Utc::now();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let ended = reply.data();
    assert_keys(&ended, &SESSION_KEYS);
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["startedAt"], live["startedAt"], "startedAt is kept");
    let ended_at = assert_utc_time(&ended["endedAt"]);
    assert_between(ended_at, before, after);
    assert!(
        ended_at >= started,
        "ended {ended_at} before it started {started}"
    );
    for key in [
        "id",
        "courseId",
        "title",
        "scheduledAt",
        "maxParticipants",
        "roomId",
    ] {
        assert_eq!(ended[key], created[key], "{key} does not change on end");
    }
    assert_eq!(read(&srv, &teacher, &created).await, ended);

    // Ended is final: neither start nor end again.
    start(&srv, &teacher, &created)
        .await
        .assert_error(409, "CONFLICT");
    end(&srv, &teacher, &created)
        .await
        .assert_error(409, "CONFLICT");
    assert_eq!(read(&srv, &teacher, &created).await, ended);
}

async fn a_scheduled_session_may_end_without_going_live(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let session = new_session(&srv, &teacher, &course, "Cancelled").await;
    let reply = end(&srv, &teacher, &session).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let ended = reply.data();
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["startedAt"], Value::Null, "it never went live");
    assert_utc_time(&ended["endedAt"]);
    start(&srv, &teacher, &session)
        .await
        .assert_error(409, "CONFLICT");
    end(&srv, &teacher, &session)
        .await
        .assert_error(409, "CONFLICT");
    assert_eq!(read(&srv, &teacher, &session).await, ended);
}

async fn only_the_instructor_or_an_admin_starts_and_ends_a_session(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let session = new_session(&srv, &teacher, &course, "Week 1").await;
    let student = srv.register("student").await;
    srv.enroll(&student, &course).await;
    let outsider = srv.register("student").await;
    // The instructor of another course, with a session of their own to prove they can run one.
    let (other_teacher, other_course) = srv.course().await;
    let theirs = new_session(&srv, &other_teacher, &other_course, "Their week 1").await;
    assert_eq!(start(&srv, &other_teacher, &theirs).await.status, 200);

    for who in [&student, &outsider, &other_teacher] {
        start(&srv, who, &session)
            .await
            .assert_error(403, "FORBIDDEN");
        end(&srv, who, &session)
            .await
            .assert_error(403, "FORBIDDEN");
    }
    // The other way round too: our instructor cannot end their session.
    end(&srv, &teacher, &theirs)
        .await
        .assert_error(403, "FORBIDDEN");
    assert_eq!(read(&srv, &other_teacher, &theirs).await["status"], "live");
    assert_eq!(
        read(&srv, &teacher, &session).await,
        session,
        "the refusals changed nothing"
    );

    // An admin may run any course's session.
    let admin = srv.admin().await;
    let reply = start(&srv, &admin, &session).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.data()["status"], "live");
    // Now live, it still only ends for those who may end it.
    for who in [&student, &other_teacher] {
        end(&srv, who, &session)
            .await
            .assert_error(403, "FORBIDDEN");
    }
    let reply = end(&srv, &admin, &session).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.data()["status"], "ended");
    start(&srv, &admin, &session)
        .await
        .assert_error(409, "CONFLICT");

    // Unknown and malformed sessions are NOT_FOUND.
    for id in [UNKNOWN_ID, "not-a-session"] {
        let fake = json!({"id": id});
        start(&srv, &teacher, &fake)
            .await
            .assert_error(404, "NOT_FOUND");
        end(&srv, &admin, &fake)
            .await
            .assert_error(404, "NOT_FOUND");
    }
}

async fn concurrent_starts_let_exactly_one_through(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let session = new_session(&srv, &teacher, &course, "Rush").await;
    let attempts = (0..8).map(|_| {
        let client = as_client(&srv, &teacher);
        let path = format!("{}/start", session_path(&session));
        async move { client.post(&path, json!({})).await }
    });
    let replies = futures::future::join_all(attempts).await;
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        vec![200, 409, 409, 409, 409, 409, 409, 409],
        "{replies:?}"
    );
    let winner = replies.iter().find(|r| r.status == 200).unwrap().data();
    for reply in replies.iter().filter(|r| r.status == 409) {
        reply.assert_error(409, "CONFLICT");
    }
    assert_eq!(
        read(&srv, &teacher, &session).await,
        winner,
        "the stored startedAt is the winner's"
    );
}

// ---------------------------------------------------------------------------------------------
// Attendance

async fn participants_start_empty_and_are_for_members_only(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let session = new_session(&srv, &teacher, &course, "Week 1").await;
    let student = srv.register("student").await;
    srv.enroll(&student, &course).await;
    let admin = srv.admin().await;
    let path = format!("{}/participants", session_path(&session));

    for who in [&teacher, &student, &admin] {
        let reply = as_client(&srv, who).get(&path).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.data(), json!({"items": [], "nextCursor": null}));
    }
    // Still empty once live (joins happen over Socket.IO) and after it ends.
    assert_eq!(start(&srv, &teacher, &session).await.status, 200);
    assert_eq!(
        as_client(&srv, &student).get(&path).await.data(),
        json!({"items": [], "nextCursor": null})
    );
    assert_eq!(end(&srv, &teacher, &session).await.status, 200);
    assert_eq!(
        as_client(&srv, &student).get(&path).await.data(),
        json!({"items": [], "nextCursor": null})
    );

    let outsider = srv.register("student").await;
    as_client(&srv, &outsider)
        .get(&path)
        .await
        .assert_error(403, "FORBIDDEN");
    for id in [UNKNOWN_ID, "nope"] {
        as_client(&srv, &admin)
            .get(&api(&format!("/sessions/{id}/participants")))
            .await
            .assert_error(404, "NOT_FOUND");
    }
}

async fn session_endpoints_require_a_token(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let session = new_session(&srv, &teacher, &course, "Week 1").await;
    let one = session_path(&session);
    for client in [srv.client(), srv.client().bearer("not.a.token")] {
        client
            .get(&sessions_path(&course))
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .post(&sessions_path(&course), json!({"title": "T"}))
            .await
            .assert_error(401, "UNAUTHORIZED");
        client.get(&one).await.assert_error(401, "UNAUTHORIZED");
        client
            .post(&format!("{one}/start"), json!({}))
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .post(&format!("{one}/end"), json!({}))
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .get(&format!("{one}/participants"))
            .await
            .assert_error(401, "UNAUTHORIZED");
    }
    // Nothing changed.
    assert_eq!(read(&srv, &teacher, &session).await, session);
    assert_eq!(
        session_ids(&srv, &teacher, &course).await,
        vec![id_of(&session).to_owned()]
    );
}

// ---------------------------------------------------------------------------------------------
// ICE servers

async fn ice_servers_are_empty_by_default_and_need_a_token(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let student = srv.register("student").await;
    let reply = as_client(&srv, &student)
        .get(&api("/webrtc/ice-servers"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.data(), json!({"iceServers": []}));
    srv.client()
        .get(&api("/webrtc/ice-servers"))
        .await
        .assert_error(401, "UNAUTHORIZED");
    srv.client()
        .bearer("not.a.token")
        .get(&api("/webrtc/ice-servers"))
        .await
        .assert_error(401, "UNAUTHORIZED");
}

/// The coturn `use-auth-secret` credential, computed here independently of the server.
fn expected_credential(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

async fn ice_servers_hand_out_stun_and_short_lived_turn_credentials(backend: Backend) {
    const SECRET: &str = "coturn-static-auth-secret";
    let stun = vec![
        "stun:stun.example.org:3478".to_owned(),
        "stun:stun2.example.org:19302".to_owned(),
    ];
    let turn = vec![
        "turn:turn.example.org:3478?transport=udp".to_owned(),
        "turns:turn.example.org:5349".to_owned(),
    ];
    let srv = TestServer::start_with(backend, |c| {
        c.stun_urls = stun.clone();
        c.turn_urls = turn.clone();
        c.turn_secret = Some(lyceum::config::Secret::new(SECRET));
        c.turn_credential_ttl = Duration::from_secs(600);
    })
    .await;
    let ada = srv.register("student").await;
    let bob = srv.register("instructor").await;

    let before = chrono::Utc::now().timestamp();
    let reply = as_client(&srv, &ada).get(&api("/webrtc/ice-servers")).await;
    let after = chrono::Utc::now().timestamp();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let data = reply.data();
    assert_keys(&data, &["iceServers"]);
    let servers = data["iceServers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{data}");

    // STUN needs no credentials, so it carries none.
    assert_eq!(servers[0], json!({"urls": stun}));

    // TURN: username `<expiry>:<userId>`, credential base64(HMAC-SHA1(secret, username)).
    let relay = &servers[1];
    assert_keys(relay, &["credential", "urls", "username"]);
    assert_eq!(relay["urls"], json!(turn));
    let username = relay["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').expect("expiry:userId");
    assert_eq!(user, ada.id);
    let expiry: i64 = expiry.parse().expect("a unix time");
    assert!(
        expiry >= before + 600 - 1 && expiry <= after + 600 + 1,
        "expiry {expiry} is not the configured 10 minutes from now ({before})"
    );
    let credential = relay["credential"].as_str().unwrap();
    assert_eq!(credential, expected_credential(SECRET, username));
    assert_eq!(
        STANDARD.decode(credential).unwrap().len(),
        20,
        "an HMAC-SHA1 is 20 bytes"
    );
    assert_ne!(credential, expected_credential("another-secret", username));

    // Each user gets credentials of their own.
    let theirs = as_client(&srv, &bob)
        .get(&api("/webrtc/ice-servers"))
        .await
        .data();
    let relay = &theirs["iceServers"][1];
    let username = relay["username"].as_str().unwrap();
    assert_eq!(username.split_once(':').unwrap().1, bob.id);
    assert_eq!(
        relay["credential"].as_str().unwrap(),
        expected_credential(SECRET, username)
    );
    assert_ne!(relay["credential"], servers[1]["credential"]);

    srv.client()
        .get(&api("/webrtc/ice-servers"))
        .await
        .assert_error(401, "UNAUTHORIZED");

    // With only STUN configured there is only the STUN entry.
    let stun_only = TestServer::start_with(backend, |c| {
        c.stun_urls = vec!["stun:stun.example.org:3478".to_owned()]
    })
    .await;
    let carol = stun_only.register("student").await;
    let reply = as_client(&stun_only, &carol)
        .get(&api("/webrtc/ice-servers"))
        .await;
    assert_eq!(
        reply.data(),
        json!({"iceServers": [{"urls": ["stun:stun.example.org:3478"]}]})
    );
}
