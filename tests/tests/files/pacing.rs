//! How slowly an upload may arrive: each `upload_idle_timeout` window must bring
//! `upload_min_rate` bytes per second. A trickle below it is abandoned and leaves nothing; an
//! upload that keeps the pace lands however long it takes, past `http_request_timeout`, which
//! bounds every other request.

use std::time::{Duration, Instant};

use lyceum_tests::{
    Backend, backend_tests,
    check::{api, as_client, sha256_hex},
};

use crate::{payloads::*, raw_http::*, support::*};

backend_tests!(
    an_upload_trickled_below_the_minimum_rate_is_abandoned_and_leaves_nothing,
    an_upload_slower_than_the_request_time_limit_lands_while_it_keeps_the_minimum_rate,
);

async fn an_upload_trickled_below_the_minimum_rate_is_abandoned_and_leaves_nothing(
    backend: Backend,
) {
    let srv = start_with(backend, |c| {
        c.upload_idle_timeout = Duration::from_secs(1);
        c.upload_min_rate = 8 * KIB;
    })
    .await;
    let ada = srv.register("student").await;
    // The first 96 KiB of a 1 MiB PNG at once (past the 64 KiB the policy sees first, so a
    // temporary file exists), then 512 bytes every 250 ms: 2 KiB/s, a quarter of the minimum.
    let png = png_sized(5, MIB as usize);
    let mut start = file_part_head("trickle.png", "image/png");
    let framing = Framing::Length(start.len() as u64 + MIB + closing().len() as u64);
    start.extend_from_slice(&png[..96 * KIB as usize]);
    let (mut reader, mut writer) = open_upload(&srv, &ada.token, &framing).await;
    assert!(send_body(&mut writer, &framing, &start).await);
    let rest = png[96 * KIB as usize..].to_vec();
    let trickling = tokio::spawn(async move {
        for piece in rest.chunks(512) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if !send_body(&mut writer, &framing, piece).await {
                return;
            }
        }
    });

    let started = Instant::now();
    let response = tokio::time::timeout(WAIT, read_response(&mut reader))
        .await
        .expect("a trickled upload is answered while its client keeps trickling")
        .expect("a response");
    response.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(response.json()["error"]["details"]["field"], "file");
    let message = response.json()["error"]["message"].to_string();
    assert!(message.contains("arrived"), "{message}");
    // The first window brought 96 KiB; the second too little.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "abandoned after {:?}, within the first window",
        started.elapsed()
    );
    trickling.abort();
    assert!(list_files(&srv, &ada).await.is_empty());
    assert_disk_holds_only(&srv, &[]).await;
}

async fn an_upload_slower_than_the_request_time_limit_lands_while_it_keeps_the_minimum_rate(
    backend: Backend,
) {
    let srv = start_with(backend, |c| {
        c.http_request_timeout = Duration::from_secs(1);
        c.upload_idle_timeout = Duration::from_secs(1);
        c.upload_min_rate = KIB;
    })
    .await;
    let ada = srv.register("student").await;
    // 160 KiB in 8 KiB pieces every 150 ms: about 53 KiB/s, for three seconds.
    let png = png_sized(6, 160 * KIB as usize);
    let body = multipart_body("steady.png", "image/png", &png);
    let client = as_client(&srv, &ada);
    let reply = client
        .send(
            client
                .request(reqwest::Method::POST, &api("/files/upload"))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(paced_body(
                    &body,
                    8 * KIB as usize,
                    Duration::from_millis(150),
                )),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let file = reply.data();
    assert_eq!(file["size"], png.len() as u64);
    assert_eq!(file["sha256"], sha256_hex(&png).as_str());
}
