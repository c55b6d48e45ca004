//! Deleting a file: only its owner or an admin may, and it is then gone everywhere: reads,
//! downloads, listings and the disk.

use lyceum_tests::{
    Backend, backend_tests,
    check::{api, as_client, id_of, ids},
    files::part,
};
use reqwest::{Method, multipart::Form};
use serde_json::json;

use crate::{payloads::*, support::*};

backend_tests!(
    deleting_a_file_removes_it_everywhere,
    only_the_owner_or_an_admin_deletes_a_file,
);

async fn deleting_a_file_removes_it_everywhere(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let client = as_client(&srv, &ada);
    let keep = uploaded(&srv, &ada, "keep.pdf", &pdf(140), "application/pdf").await;
    let file = uploaded(&srv, &ada, "gone.png", &png(140), "image/png").await;
    assert_disk_holds_only(&srv, &[&keep, &file]).await;

    let deleted = client.delete(&api(&format!("/files/{}", id(&file)))).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.data(), json!({}));

    get_file(&srv, &ada, id(&file))
        .await
        .assert_error(404, "NOT_FOUND");
    for path in byte_paths(&file) {
        fetch_with(&client, Method::GET, &path, &[])
            .await
            .assert_error(404, "NOT_FOUND");
    }
    fetch_with(&srv.client(), Method::GET, signed_url(&file), &[])
        .await
        .assert_error(404, "NOT_FOUND");
    assert!(!stored_path(&srv, &file).exists(), "the bytes are gone");
    assert_disk_holds_only(&srv, &[&keep]).await;
    let listed = list_files(&srv, &ada).await;
    assert_eq!(ids(&listed), vec![id(&keep).to_owned()]);

    // Deleting twice: it is no longer there.
    client
        .delete(&api(&format!("/files/{}", id(&file))))
        .await
        .assert_error(404, "NOT_FOUND");
    // The file kept is untouched.
    assert_served(&download(&client, &keep).await, &keep, &pdf(140));
}

async fn only_the_owner_or_an_admin_deletes_a_file(backend: Backend) {
    let srv = start(backend).await;
    let (teacher, course) = srv.course().await;
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    let stranger = srv.register("student").await;
    let admin = srv.admin().await;
    srv.enroll(&ada, &course).await;
    srv.enroll(&bob, &course).await;
    let bytes = pdf(150);
    let file = uploaded_form(
        &srv,
        &ada,
        &format!("?courseId={}", id_of(&course)),
        Form::new().part("file", part("essay.pdf", &bytes, "application/pdf")),
    )
    .await;
    let path = api(&format!("/files/{}", id(&file)));

    // Course members read it but do not own it.
    for who in [&bob, &teacher] {
        as_client(&srv, who)
            .delete(&path)
            .await
            .assert_error(403, "FORBIDDEN");
    }
    as_client(&srv, &stranger)
        .delete(&path)
        .await
        .assert_error(404, "NOT_FOUND");
    srv.client()
        .delete(&path)
        .await
        .assert_error(401, "UNAUTHORIZED");
    srv.client()
        .bearer("not.a.token")
        .delete(&path)
        .await
        .assert_error(401, "UNAUTHORIZED");
    assert_served(
        &download(&as_client(&srv, &ada), &file).await,
        &file,
        &bytes,
    );
    assert_disk_holds_only(&srv, &[&file]).await;

    let deleted = as_client(&srv, &admin).delete(&path).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.data(), json!({}));
    get_file(&srv, &ada, id(&file))
        .await
        .assert_error(404, "NOT_FOUND");
    assert_disk_holds_only(&srv, &[]).await;

    // The owner deletes their own, course or not.
    let own = uploaded(&srv, &bob, "mine.png", &png(151), "image/png").await;
    let deleted = as_client(&srv, &bob)
        .delete(&api(&format!("/files/{}", id(&own))))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_disk_holds_only(&srv, &[]).await;
}
