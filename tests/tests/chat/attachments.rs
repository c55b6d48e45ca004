//! Attachments: a message carries its files whole until a file is deleted, and then says so;
//! only files the sender may read can be attached.

use lyceum_tests::{
    Account, Backend, TestServer, backend_tests,
    chat::{connect, post_message},
    check::{api, as_client, id_of},
    files::{part, upload_form},
};
use reqwest::multipart::Form;
use serde_json::{Value, json};

use crate::support::*;

backend_tests!(attachments_carry_the_file_until_it_is_deleted_and_then_say_so,);

/// A tiny but well-formed PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\0\x01\0\0\x05\0\x01\r\n-\xb4\0\0\0\0IEND\xaeB`\x82";

/// Uploads `PNG` as `name`, shared with `course` when given; returns the `file`.
async fn upload_png(srv: &TestServer, who: &Account, name: &str, course: Option<&Value>) -> Value {
    let mut form = Form::new();
    if let Some(course) = course {
        form = form.text("courseId", id_of(course).to_owned());
    }
    let file = part(name, PNG, "image/png");
    let reply = upload_form(srv, who, "", form.part("file", file)).await;
    assert_eq!(reply.status, 201, "upload: {}", reply.body);
    reply.data()
}

/// Attachments without their `signedUrl`, whose expiry is set when each view is made.
fn unsigned(attachments: &Value) -> Value {
    let mut copy = attachments.clone();
    for item in copy.as_array_mut().expect("an array") {
        item.as_object_mut().unwrap().remove("signedUrl");
    }
    copy
}

async fn attachments_carry_the_file_until_it_is_deleted_and_then_say_so(backend: Backend) {
    let srv = start(backend).await;
    let w = world(&srv).await;
    let shared = upload_png(&srv, &w.a, "diagram.png", Some(&w.c1)).await;
    let private = upload_png(&srv, &w.a, "mine.png", None).await;

    // Over the socket: the room receives the message with both files in order, whole.
    let a = connect(&srv, &w.a).await;
    let mut b = connect(&srv, &w.b).await;
    join(&a, &w.r1).await;
    join(&b, &w.r1).await;
    let ack = a
        .emit_ack(
            "chat:send_message",
            json!({
                "roomId": w.r1,
                "content": "see attached",
                "clientId": fresh_client_id(),
                "attachments": [id_of(&shared), id_of(&private)],
            }),
        )
        .await;
    let sent = ok(&ack)["message"].clone();
    assert_eq!(
        unsigned(&sent["attachments"]),
        unsigned(&json!([shared, private]))
    );
    let received = b.expect_event("chat:new_message", WAIT).await;
    let attachments = received["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 2);
    for (got, uploaded) in attachments.iter().zip([&shared, &private]) {
        for key in [
            "id",
            "url",
            "filename",
            "originalName",
            "size",
            "mimetype",
            "folder",
            "sha256",
            "courseId",
        ] {
            assert_eq!(got[key], uploaded[key], "{key}");
        }
    }
    // A member follows the attachment's signed link without any header.
    let bytes = reqwest::get(srv.url(attachments[0]["signedUrl"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(bytes.status(), 200);
    assert_eq!(bytes.bytes().await.unwrap().as_ref(), PNG);

    // Files the sender may not read cannot be attached: another user's private file, or a
    // course file seen from outside the course.
    let c_file = upload_png(&srv, &w.c, "c.png", None).await;
    refused(
        &a.emit_ack(
            "chat:send_message",
            json!({ "roomId": w.r1, "content": "x", "clientId": fresh_client_id(), "attachments": [id_of(&c_file)] }),
        )
        .await,
        "NOT_FOUND",
    );
    post_message(
        &srv,
        &w.c,
        &w.r2,
        json!({ "content": "x", "attachments": [id_of(&shared)] }),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    // A member of the course may pass its file on over REST.
    let passed_on = post_message(
        &srv,
        &w.b,
        &w.r1,
        json!({ "content": "again", "attachments": [id_of(&shared)] }),
    )
    .await;
    assert_eq!(passed_on.status, 201, "{}", passed_on.body);

    // Deleting the file leaves the messages readable; the attachment says it is gone.
    as_client(&srv, &w.a)
        .delete(&api(&format!("/files/{}", id_of(&shared))))
        .await
        .data();
    let items = history(&srv, &w.b, &w.r1).await;
    let first = items
        .iter()
        .find(|m| m["id"] == sent["id"])
        .expect("the message is still there");
    assert_eq!(
        unsigned(&first["attachments"]),
        unsigned(&json!([{ "id": shared["id"], "deleted": true }, private]))
    );
    let second = items
        .iter()
        .find(|m| m["id"] == passed_on.data()["id"])
        .unwrap();
    assert_eq!(
        second["attachments"],
        json!([{ "id": shared["id"], "deleted": true }])
    );
    // And the deleted file can no longer be attached.
    post_message(
        &srv,
        &w.a,
        &w.r1,
        json!({ "content": "x", "attachments": [id_of(&shared)] }),
    )
    .await
    .assert_error(404, "NOT_FOUND");
}
