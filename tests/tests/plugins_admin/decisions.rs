//! The decision audit: what plugins refused, flagged or failed on, with who, where and under
//! which request id, naming the content only by its SHA-256; filtered, paged by cursor,
//! newest first.

use chrono::{SecondsFormat, Utc};

use super::*;

backend_tests!(
    a_refusal_is_audited_with_its_request_id_and_never_its_content,
    decisions_filter_alone_and_combined_and_page_newest_first,
    bad_filters_are_refused_naming_the_field,
);

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn a_refusal_is_audited_with_its_request_id_and_never_its_content(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv).await;
    let admin = cast.admin(&srv);
    activate(
        &admin,
        "chat",
        json!([builtin_list("reject", "zebra", "no_zebras")]),
    )
    .await;

    let text = "a zebra crossed the lecture hall";
    let client = as_client(&srv, &cast.student);
    let reply = client
        .send(
            client
                .request(
                    Method::POST,
                    &api(&format!("/chat/rooms/{}/messages", cast.room)),
                )
                .header("x-request-id", "lesson-7.refusal")
                .json(&json!({ "content": text })),
        )
        .await;
    assert_rejected(&reply, "no_zebras");

    let listed = decisions_within(&admin, "", 1).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let decision = &listed[0];
    assert_keys(
        decision,
        &[
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
            "requestId",
            "contentSha256",
        ],
    );
    lyceum_tests::check::assert_uuid_v7(&decision["id"]);
    assert_utc_time(&decision["at"]);
    assert_eq!(decision["slot"], "chat");
    assert_eq!(
        decision["plugin"],
        json!({ "name": "chat-moderation", "sha256": chat_builtin_sha256() })
    );
    assert_eq!(decision["verdict"], "reject");
    assert_eq!(decision["reason"], "no_zebras");
    assert_eq!(decision["shadow"], false);
    assert_eq!(decision["actorId"], cast.student.id.as_str());
    assert_eq!(decision["courseId"], cast.course["id"]);
    assert_eq!(decision["roomId"], cast.room.as_str());
    assert_eq!(decision["requestId"], "lesson-7.refusal");
    assert_eq!(decision["contentSha256"], sha256_hex(text.as_bytes()));
    let page = admin.get(&plugins("/decisions")).await;
    assert!(!page.text.contains("zebra crossed"), "{}", page.text);

    // Over the socket, the server names the event's request itself.
    let socket = connect(&srv, &cast.student).await;
    let ack = socket
        .emit_ack(
            "chat:send_message",
            json!({ "roomId": cast.room, "content": "zebra!", "clientId": "z-1" }),
        )
        .await;
    assert_eq!(ack["error"]["details"]["reason"], "no_zebras", "{ack}");
    let listed = decisions_within(&admin, "", 2).await;
    let newest = &listed[0];
    assert_eq!(newest["contentSha256"], sha256_hex(b"zebra!"));
    let request_id = newest["requestId"].as_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(request_id).is_ok(),
        "a server-made id: {newest}"
    );
}

async fn decisions_filter_alone_and_combined_and_page_newest_first(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv).await;
    let admin = cast.admin(&srv);
    let template = install(&admin, fixtures::TEMPLATE, "template").await;
    let panic = install(&admin, fixtures::PANIC, "panic").await;
    let builtin = chat_builtin_sha256();
    activate(
        &admin,
        "chat",
        json!([
            template_link(&template, "forbidden words"),
            {
                "module": "builtin:chat-moderation",
                "config": { "lists": [
                    { "action": "reject", "words": ["zebra"], "code": "no_zebras" },
                    { "action": "flag", "words": ["giraffe"], "reason": "tall animal" },
                ] }
            },
        ]),
    )
    .await;
    // A files plugin that traps on this upload's name; fail-open lets the upload through.
    activate(
        &admin,
        "files",
        json!([{ "module": panic, "failure": "fail-open" }]),
    )
    .await;

    let say = |text: &'static str| say(&srv, &cast.student, &cast.room, text);
    assert_rejected(&say("forbidden words").await, "blocked_phrase");
    assert_rejected(&say("a zebra").await, "no_zebras");
    assert_accepted(&say("hello").await);
    let form = Form::new().part(
        "file",
        Part::bytes(b"notes".to_vec())
            .file_name("panic.txt")
            .mime_str("text/plain")
            .unwrap(),
    );
    let client = as_client(&srv, &cast.student);
    let upload = client
        .send(
            client
                .request(Method::POST, &api("/files/upload"))
                .multipart(form),
        )
        .await;
    assert_eq!(upload.status, 201, "{}", upload.body);
    // The upload asks the plugin twice (before and after the bytes), so wait for the
    // audit writer to settle rather than for one decision.
    decisions_within(&admin, "slot=files", 1).await;
    decisions_within(&admin, "slot=chat", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let files = decisions(&admin, "slot=files").await;

    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let flagged = assert_accepted(&say("a giraffe").await);
    assert_eq!(flagged["flagged"], true, "{flagged}");
    let all = decisions_within(&admin, "", 3 + files.len()).await;
    assert_eq!(all.len(), 3 + files.len(), "{all:?}");

    let count = |query: &'static str| {
        let admin = admin.clone();
        async move { decisions(&admin, query).await }
    };
    let verdicts = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|d| {
                format!(
                    "{}:{}",
                    d["verdict"].as_str().unwrap(),
                    d["reason"].as_str().unwrap_or("")
                )
            })
            .collect()
    };

    // One filter at a time.
    assert_eq!(
        verdicts(&count("slot=chat").await),
        [
            "flag:tall animal",
            "reject:no_zebras",
            "reject:blocked_phrase"
        ]
    );
    let files = count("slot=files").await;
    assert!(!files.is_empty());
    for decision in &files {
        assert_eq!(decision["slot"], "files", "{decision}");
        assert_eq!(decision["verdict"], "trap", "{decision}");
        assert_eq!(decision["plugin"]["sha256"], panic.as_str(), "{decision}");
    }
    assert_eq!(count("slot=signaling").await, Vec::<Value>::new());
    assert_eq!(
        verdicts(&count("verdict=reject").await),
        ["reject:no_zebras", "reject:blocked_phrase"]
    );
    assert_eq!(verdicts(&count("verdict=flag").await), ["flag:tall animal"]);
    let by_template = decisions(&admin, &format!("plugin={template}")).await;
    assert_eq!(verdicts(&by_template), ["reject:blocked_phrase"]);
    let by_builtin = decisions(&admin, &format!("plugin={builtin}")).await;
    assert_eq!(
        verdicts(&by_builtin),
        ["flag:tall animal", "reject:no_zebras"]
    );
    let shouted = decisions(&admin, &format!("plugin={}", template.to_uppercase())).await;
    assert_eq!(shouted, by_template, "hex is hex in either case");
    assert_eq!(count("shadow=true").await, Vec::<Value>::new());
    assert_eq!(count("shadow=false").await, all);
    let later = decisions(&admin, &format!("since={between}")).await;
    assert_eq!(verdicts(&later), ["flag:tall animal"]);
    let earlier = decisions(&admin, &format!("until={between}")).await;
    assert_eq!(earlier, all[1..]);
    assert_eq!(
        decisions(&admin, &format!("since={between}&until={between}")).await,
        Vec::<Value>::new()
    );

    // Combined.
    let combined = decisions(
        &admin,
        &format!("slot=chat&verdict=reject&plugin={builtin}&shadow=false&until={between}"),
    )
    .await;
    assert_eq!(verdicts(&combined), ["reject:no_zebras"]);

    // Newest first, and a cursor walks the same list a page at a time.
    let ids: Vec<&str> = all.iter().map(|d| d["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = plugins("/decisions?limit=1");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = admin.get(&path).await.data();
        let items = page["items"].as_array().unwrap().clone();
        assert!(items.len() <= 1, "{page}");
        walked.extend(items);
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(walked.len() <= all.len(), "paging never ends");
    }
    assert_eq!(walked, all);
    // A cursor keeps its filters' company.
    let first = admin
        .get(&plugins("/decisions?slot=chat&limit=2"))
        .await
        .data();
    let next = first["nextCursor"].as_str().expect("a next page");
    let rest = decisions(&admin, &format!("slot=chat&limit=2&cursor={next}")).await;
    assert_eq!(verdicts(&rest), ["reject:blocked_phrase"]);
}

async fn bad_filters_are_refused_naming_the_field(backend: Backend) {
    let srv = start(backend).await;
    let admin = as_client(&srv, &srv.admin().await);
    for (query, field) in [
        ("slot=nonesuch", "slot"),
        ("shadow=maybe", "shadow"),
        ("since=yesterday", "since"),
        ("until=2024-13-01T00:00:00Z", "until"),
        ("cursor=not-a-cursor", "cursor"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("plugin=not-a-sha256", "plugin"),
    ] {
        let reply = admin.get(&plugins(&format!("/decisions?{query}"))).await;
        assert_eq!(
            (reply.status, reply.body["error"]["code"].as_str()),
            (400, Some("VALIDATION_FAILED")),
            "?{query}: {}",
            reply.body
        );
        assert_eq!(reply.field(), field, "?{query}: {}", reply.body);
    }
    let reply = admin.get(&plugins("/decisions?colour=red")).await;
    reply.assert_error(400, "VALIDATION_FAILED");
}
