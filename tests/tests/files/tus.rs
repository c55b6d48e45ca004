//! Resumable uploads over tus 1.0 at `/api/v1/files/tus`: creation, appends at the confirmed
//! offset across requests (and across a request that breaks off), termination, and the same
//! validation, caps and ownership as a one-shot upload.

use base64::{Engine, engine::general_purpose::STANDARD};
use lyceum_tests::{Account, Backend, Client, Reply, TestServer, backend_tests, check::*};
use reqwest::Method;
use tokio::io::AsyncWriteExt;

use crate::{
    payloads::{elf, mp4},
    support::{assert_disk_holds_only, get_file, paced_body, start, start_with},
};

backend_tests!(
    a_video_arrives_in_pieces_and_becomes_a_file,
    appends_must_continue_where_the_upload_stands,
    a_broken_off_append_keeps_what_arrived_and_the_upload_resumes,
    a_stalled_append_gives_the_upload_back_after_the_idle_timeout,
    an_append_slower_than_the_request_time_limit_lands_while_it_keeps_the_minimum_rate,
    the_validation_slot_and_the_caps_apply_to_resumable_uploads,
    uploads_belong_to_their_creator_and_can_be_terminated,
    the_protocol_version_and_content_type_are_required,
);

const TUS: &str = "/api/v1/files/tus";

fn metadata(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {}", STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

fn tus(client: &Client, method: Method, path: &str) -> reqwest::RequestBuilder {
    client
        .request(method, path)
        .header("Tus-Resumable", "1.0.0")
}

/// Creates an upload of `length` bytes; returns its path (the `Location`).
async fn create(srv: &TestServer, who: &Account, length: usize, meta: &[(&str, &str)]) -> Reply {
    let client = as_client(srv, who);
    client
        .send(
            tus(&client, Method::POST, TUS)
                .header("Upload-Length", length.to_string())
                .header("Upload-Metadata", metadata(meta)),
        )
        .await
}

async fn created(srv: &TestServer, who: &Account, length: usize, meta: &[(&str, &str)]) -> String {
    let reply = create(srv, who, length, meta).await;
    assert_eq!(reply.status, 201, "create: {}", reply.body);
    assert_eq!(reply.headers["tus-resumable"], "1.0.0");
    let location = reply.headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{TUS}/")), "{location}");
    location
}

async fn append(srv: &TestServer, who: &Account, at: &str, offset: usize, bytes: &[u8]) -> Reply {
    let client = as_client(srv, who);
    client
        .send(
            tus(&client, Method::PATCH, at)
                .header("Upload-Offset", offset.to_string())
                .header("Content-Type", "application/offset+octet-stream")
                .body(bytes.to_vec()),
        )
        .await
}

async fn offset(srv: &TestServer, who: &Account, at: &str) -> Option<u64> {
    let client = as_client(srv, who);
    let reply = client.send(tus(&client, Method::HEAD, at)).await;
    if reply.status == 404 {
        return None;
    }
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["cache-control"], "no-store");
    Some(
        reply.headers["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap(),
    )
}

fn video_meta() -> Vec<(&'static str, &'static str)> {
    vec![
        ("filename", "lecture.mp4"),
        ("filetype", "video/mp4"),
        ("folder", "videos"),
    ]
}

async fn a_video_arrives_in_pieces_and_becomes_a_file(backend: Backend) {
    let srv = start(backend).await;
    let who = srv.register("student").await;
    let client = srv.client();
    let discovery = client.send(client.request(Method::OPTIONS, TUS)).await;
    assert_eq!(discovery.status, 204);
    assert_eq!(discovery.headers["tus-version"], "1.0.0");
    assert_eq!(discovery.headers["tus-extension"], "creation,termination");

    // Bigger than the 64 KiB head, so the policy check happens in the middle of an append.
    let video: Vec<u8> = mp4(7).into_iter().cycle().take(300 * 1024).collect();
    let at = created(&srv, &who, video.len(), &video_meta()).await;
    assert_eq!(offset(&srv, &who, &at).await, Some(0));

    let cuts = [0, 1000, 100 * 1024, 250 * 1024, video.len()];
    let mut file_id = None;
    for pair in cuts.windows(2) {
        let reply = append(&srv, &who, &at, pair[0], &video[pair[0]..pair[1]]).await;
        assert_eq!(reply.status, 204, "{}", reply.text);
        assert_eq!(reply.headers["upload-offset"], pair[1].to_string().as_str());
        file_id = reply
            .headers
            .get("lyceum-file-id")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(file_id.is_some(), pair[1] == video.len());
    }
    let file = get_file(&srv, &who, file_id.as_deref().unwrap())
        .await
        .data();
    assert_eq!(file["size"], video.len() as u64);
    assert_eq!(file["sha256"], sha256_hex(&video).as_str());
    assert_eq!(file["mimetype"], "video/mp4");
    assert_eq!(file["folder"], "videos");
    assert_eq!(file["originalName"], "lecture.mp4");
    assert_eq!(offset(&srv, &who, &at).await, Some(video.len() as u64));
    // Complete: nothing more can be appended.
    append(&srv, &who, &at, video.len(), b"x")
        .await
        .assert_error(409, "CONFLICT");
    assert_disk_holds_only(&srv, &[&file]).await;
}

async fn appends_must_continue_where_the_upload_stands(backend: Backend) {
    let srv = start(backend).await;
    let who = srv.register("student").await;
    let video = mp4(8);
    let at = created(&srv, &who, video.len(), &video_meta()).await;
    assert_eq!(append(&srv, &who, &at, 0, &video[..10]).await.status, 204);
    for wrong in [0, 5, 11] {
        append(&srv, &who, &at, wrong, &video[10..])
            .await
            .assert_error(409, "CONFLICT");
    }
    // Past the declared length: refused, and the upload is gone.
    let mut too_long = video[10..].to_vec();
    too_long.push(0);
    append(&srv, &who, &at, 10, &too_long)
        .await
        .assert_error(400, "VALIDATION_FAILED");
    assert_eq!(offset(&srv, &who, &at).await, None);
    assert_disk_holds_only(&srv, &[]).await;
}

/// A raw PATCH from offset 0 that announces all of `video` and sends only its first `sent`
/// bytes; the connection is left open for the caller to drop or hold.
async fn partial_append(
    srv: &TestServer,
    who: &Account,
    at: &str,
    video: &[u8],
    sent: usize,
) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let head = format!(
        "PATCH {at} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        srv.addr,
        who.token,
        video.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&video[..sent]).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

async fn a_broken_off_append_keeps_what_arrived_and_the_upload_resumes(backend: Backend) {
    let srv = start(backend).await;
    let who = srv.register("student").await;
    let video: Vec<u8> = mp4(9).into_iter().cycle().take(200 * 1024).collect();
    let at = created(&srv, &who, video.len(), &video_meta()).await;

    // A PATCH announcing everything that sends 120 KiB and then drops its connection.
    let sent = 120 * 1024;
    let stream = partial_append(&srv, &who, &at, &video, sent).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(stream);

    // The server keeps what arrived; the client asks where to go on from.
    let mut resumed_at = None;
    for _ in 0..50 {
        let now = offset(&srv, &who, &at).await.expect("the upload survives");
        if now == sent as u64 {
            resumed_at = Some(now as usize);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let from = resumed_at.expect("the offset reaches what was sent");
    let reply = append(&srv, &who, &at, from, &video[from..]).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let id = reply.headers["lyceum-file-id"].to_str().unwrap().to_owned();
    let file = get_file(&srv, &who, &id).await.data();
    assert_eq!(file["sha256"], sha256_hex(&video).as_str());
}

async fn a_stalled_append_gives_the_upload_back_after_the_idle_timeout(backend: Backend) {
    let srv = start_with(backend, |c| {
        c.upload_idle_timeout = std::time::Duration::from_secs(1)
    })
    .await;
    let who = srv.register("student").await;
    let video: Vec<u8> = mp4(4).into_iter().cycle().take(100 * 1024).collect();
    let at = created(&srv, &who, video.len(), &video_meta()).await;

    // A PATCH that sends 40 KiB and then neither sends nor closes, as a connection that died
    // without a word looks to the server.
    let sent = 40 * 1024;
    let stalled = partial_append(&srv, &who, &at, &video, sent).await;
    let resumed = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        while offset(&srv, &who, &at).await != Some(sent as u64) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The client retries from a new connection at the offset the server reports: refused
        // as a concurrent append while the stalled one holds the upload, accepted once it is
        // let go.
        loop {
            let from = offset(&srv, &who, &at).await.expect("the upload survives") as usize;
            let reply = append(&srv, &who, &at, from, &video[from..]).await;
            if reply.status == 204 {
                assert_eq!(from, sent, "the stalled append's bytes were kept");
                break;
            }
            reply.assert_error(409, "CONFLICT");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(resumed.is_ok(), "the stalled append still holds the upload");
    drop(stalled);
}

async fn an_append_slower_than_the_request_time_limit_lands_while_it_keeps_the_minimum_rate(
    backend: Backend,
) {
    let srv = start_with(backend, |c| {
        c.http_request_timeout = std::time::Duration::from_secs(1);
        c.upload_idle_timeout = std::time::Duration::from_secs(1);
        c.upload_min_rate = 1024;
    })
    .await;
    let who = srv.register("student").await;
    let video: Vec<u8> = mp4(5).into_iter().cycle().take(160 * 1024).collect();
    let at = created(&srv, &who, video.len(), &video_meta()).await;
    // 8 KiB every 150 ms: about three seconds for the whole video in one PATCH.
    let client = as_client(&srv, &who);
    let reply = client
        .send(
            tus(&client, Method::PATCH, &at)
                .header("Upload-Offset", "0")
                .header("Content-Type", "application/offset+octet-stream")
                .body(paced_body(
                    &video,
                    8 * 1024,
                    std::time::Duration::from_millis(150),
                )),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let id = reply.headers["lyceum-file-id"].to_str().unwrap().to_owned();
    let file = get_file(&srv, &who, &id).await.data();
    assert_eq!(file["sha256"], sha256_hex(&video).as_str());
}

async fn the_validation_slot_and_the_caps_apply_to_resumable_uploads(backend: Backend) {
    let srv = start_with(backend, |c| c.upload_max_videos = 100 * 1024).await;
    let who = srv.register("student").await;

    // Over the cap: refused at creation, from the declared length alone.
    create(&srv, &who, 100 * 1024 + 1, &video_meta())
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");

    // An executable named as a video: refused when its head has arrived; nothing is kept.
    let binary = elf();
    let at = created(&srv, &who, binary.len(), &video_meta()).await;
    let reply = append(&srv, &who, &at, 0, &binary).await;
    reply.assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    assert_eq!(reply.body["error"]["details"]["reason"], "executable");
    assert_eq!(offset(&srv, &who, &at).await, None);
    assert_disk_holds_only(&srv, &[]).await;

    // Unknown folder in the metadata.
    create(
        &srv,
        &who,
        10,
        &[("filename", "a.mp4"), ("folder", "secrets")],
    )
    .await
    .assert_error(400, "VALIDATION_FAILED");
    // Missing length.
    let client = as_client(&srv, &who);
    client
        .send(tus(&client, Method::POST, TUS))
        .await
        .assert_error(400, "VALIDATION_FAILED");
}

async fn uploads_belong_to_their_creator_and_can_be_terminated(backend: Backend) {
    let srv = start(backend).await;
    let owner = srv.register("student").await;
    let other = srv.register("student").await;
    let video = mp4(10);
    let at = created(&srv, &owner, video.len(), &video_meta()).await;
    assert_eq!(
        append(&srv, &owner, &at, 0, &video[..100]).await.status,
        204
    );

    assert_eq!(offset(&srv, &other, &at).await, None);
    append(&srv, &other, &at, 100, &video[100..])
        .await
        .assert_error(404, "NOT_FOUND");
    let client = srv.client();
    assert_eq!(
        client.send(tus(&client, Method::HEAD, &at)).await.status,
        401
    );

    let as_other = as_client(&srv, &other);
    assert_eq!(
        as_other
            .send(tus(&as_other, Method::DELETE, &at))
            .await
            .status,
        404
    );
    let as_owner = as_client(&srv, &owner);
    assert_eq!(
        as_owner
            .send(tus(&as_owner, Method::DELETE, &at))
            .await
            .status,
        204
    );
    assert_eq!(offset(&srv, &owner, &at).await, None);
    assert_disk_holds_only(&srv, &[]).await;
}

async fn the_protocol_version_and_content_type_are_required(backend: Backend) {
    let srv = start(backend).await;
    let who = srv.register("student").await;
    let client = as_client(&srv, &who);
    let reply = client
        .send(
            client
                .request(Method::POST, TUS)
                .header("Upload-Length", "10"),
        )
        .await;
    assert_eq!(reply.status, 412);
    assert_eq!(reply.headers["tus-version"], "1.0.0");

    let video = mp4(11);
    let at = created(&srv, &who, video.len(), &video_meta()).await;
    let reply = client
        .send(
            tus(&client, Method::PATCH, &at)
                .header("Upload-Offset", "0")
                .header("Content-Type", "application/octet-stream")
                .body(video.clone()),
        )
        .await;
    reply.assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    let reply = client
        .send(
            tus(&client, Method::PATCH, &at)
                .header("Content-Type", "application/offset+octet-stream")
                .body(video.clone()),
        )
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(offset(&srv, &who, &at).await, Some(0));
}
