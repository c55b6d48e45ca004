//! Who may read a file: its owner and admins, or the members of the course it was uploaded
//! into (which takes membership); signed urls that work without a header, refuse tampering
//! and expire; and the token every file endpoint requires.

use std::time::Duration;

use lyceum_tests::{
    Backend, backend_tests,
    check::{UNKNOWN_ID, api, as_client, id_of},
    files::{part, upload_form},
};
use reqwest::{Method, multipart::Form};
use serde_json::Value;

use crate::{payloads::*, support::*};

backend_tests!(
    files_are_private_to_their_owner_and_admins,
    course_files_are_readable_by_the_course_members,
    uploading_into_a_course_takes_membership_of_it,
    signed_urls_work_without_a_header_and_refuse_tampering,
    signed_urls_expire,
    file_endpoints_require_a_token_and_unknown_ids_are_not_found,
);

async fn files_are_private_to_their_owner_and_admins(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    let teacher = srv.register("instructor").await;
    let admin = srv.admin().await;
    let bytes = png(90);
    let file = uploaded(&srv, &ada, "private.png", &bytes, "image/png").await;

    for who in [&ada, &admin] {
        let client = as_client(&srv, who);
        let read = get_file(&srv, who, id(&file)).await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(without_signed_url(&read.data()), without_signed_url(&file));
        for path in byte_paths(&file) {
            assert_served(
                &fetch_with(&client, Method::GET, &path, &[]).await,
                &file,
                &bytes,
            );
        }
    }
    for who in [&bob, &teacher] {
        let client = as_client(&srv, who);
        get_file(&srv, who, id(&file))
            .await
            .assert_error(404, "NOT_FOUND");
        for path in byte_paths(&file) {
            fetch_with(&client, Method::GET, &path, &[])
                .await
                .assert_error(404, "NOT_FOUND");
        }
        let head = fetch_with(&client, Method::HEAD, url(&file), &[]).await;
        assert_eq!(head.status, 404);
        assert!(list_files(&srv, who).await.is_empty());
    }

    // Without a token, or with a bad one: not signed in.
    for path in byte_paths(&file) {
        fetch_with(&srv.client(), Method::GET, &path, &[])
            .await
            .assert_error(401, "UNAUTHORIZED");
        fetch_with(&srv.client().bearer("not.a.token"), Method::GET, &path, &[])
            .await
            .assert_error(401, "UNAUTHORIZED");
    }

    // The same stored name under another folder is not the file.
    let filename = file["filename"].as_str().unwrap();
    for folder in ["documents", "misc", "videos"] {
        fetch_with(
            &as_client(&srv, &ada),
            Method::GET,
            &format!("/uploads/{folder}/{filename}"),
            &[],
        )
        .await
        .assert_error(404, "NOT_FOUND");
    }
    // Nor are paths that try to leave the upload dir.
    for path in [
        "/uploads/images/../images/x.png".to_owned(),
        format!("/uploads/images/%2e%2e%2fimages%2f{filename}"),
        format!("/uploads/.tmp/{filename}"),
        "/uploads/images/".to_owned(),
    ] {
        let got = fetch_with(&as_client(&srv, &ada), Method::GET, &path, &[]).await;
        assert!(
            got.status == 404 || got.status == 400,
            "{path}: {}",
            got.status
        );
        assert_ne!(got.bytes, bytes);
    }
}

async fn course_files_are_readable_by_the_course_members(backend: Backend) {
    let srv = start(backend).await;
    let (teacher, course) = srv.course().await;
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    let outsider = srv.register("student").await;
    let other_teacher = srv.register("instructor").await;
    let admin = srv.admin().await;
    srv.enroll(&ada, &course).await;
    srv.enroll(&bob, &course).await;
    let course_id = id_of(&course);

    let bytes = pdf(100);
    let file = uploaded_form(
        &srv,
        &ada,
        "",
        Form::new()
            .text("courseId", course_id.to_owned())
            .part("file", part("shared notes.pdf", &bytes, "application/pdf")),
    )
    .await;
    assert_eq!(file["courseId"], course_id);

    for who in [&ada, &bob, &teacher, &admin] {
        let read = get_file(&srv, who, id(&file)).await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.data()["courseId"], course_id);
        let client = as_client(&srv, who);
        for path in byte_paths(&file) {
            assert_served(
                &fetch_with(&client, Method::GET, &path, &[]).await,
                &file,
                &bytes,
            );
        }
    }
    for who in [&outsider, &other_teacher] {
        get_file(&srv, who, id(&file))
            .await
            .assert_error(404, "NOT_FOUND");
        let client = as_client(&srv, who);
        for path in byte_paths(&file) {
            fetch_with(&client, Method::GET, &path, &[])
                .await
                .assert_error(404, "NOT_FOUND");
        }
    }

    // Reading is not owning: the list is the caller's own files.
    assert!(list_files(&srv, &bob).await.is_empty());
    assert!(list_files(&srv, &teacher).await.is_empty());
    assert_eq!(list_files(&srv, &ada).await.len(), 1);

    // Leaving the course ends access.
    let left = as_client(&srv, &bob)
        .delete(&api(&format!(
            "/courses/{course_id}/enrollments/{}",
            bob.id
        )))
        .await;
    assert_eq!(left.status, 200, "{}", left.body);
    get_file(&srv, &bob, id(&file))
        .await
        .assert_error(404, "NOT_FOUND");
    fetch_with(&as_client(&srv, &bob), Method::GET, url(&file), &[])
        .await
        .assert_error(404, "NOT_FOUND");
}

async fn uploading_into_a_course_takes_membership_of_it(backend: Backend) {
    let srv = start(backend).await;
    let (teacher, course) = srv.course().await;
    let ada = srv.register("student").await;
    let outsider = srv.register("student").await;
    let admin = srv.admin().await;
    srv.enroll(&ada, &course).await;
    let course_id = id_of(&course);
    let form = |seed| {
        Form::new()
            .text("courseId", course_id.to_owned())
            .part("file", part("work.png", &png(seed), "image/png"))
    };

    let refused = upload_form(&srv, &outsider, "", form(110)).await;
    refused.assert_error(403, "FORBIDDEN");
    let refused = upload_form(&srv, &outsider, &format!("?courseId={course_id}"), {
        Form::new().part("file", part("work.png", &png(111), "image/png"))
    })
    .await;
    refused.assert_error(403, "FORBIDDEN");
    let unknown = upload_form(
        &srv,
        &ada,
        "",
        Form::new()
            .text("courseId", UNKNOWN_ID)
            .part("file", part("work.png", &png(112), "image/png")),
    )
    .await;
    unknown.assert_error(404, "NOT_FOUND");
    assert!(list_files(&srv, &outsider).await.is_empty());
    assert!(list_files(&srv, &ada).await.is_empty());
    assert_disk_holds_only(&srv, &[]).await;

    let mut stored = Vec::new();
    for (who, seed) in [(&ada, 113), (&teacher, 114), (&admin, 115)] {
        let file = uploaded_form(&srv, who, "", form(seed)).await;
        assert_eq!(file["courseId"], course_id);
        stored.push(file);
    }
    let refs: Vec<&Value> = stored.iter().collect();
    assert_disk_holds_only(&srv, &refs).await;
}

async fn signed_urls_work_without_a_header_and_refuse_tampering(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let bytes = png(120);
    let file = uploaded(&srv, &ada, "linked.png", &bytes, "image/png").await;
    let other = uploaded(&srv, &ada, "other.png", &png(121), "image/png").await;
    let signed = signed_url(&file).to_owned();
    let anonymous = srv.client();

    assert_served(
        &fetch_with(&anonymous, Method::GET, &signed, &[]).await,
        &file,
        &bytes,
    );
    // A freshly read file has a working link too.
    let fresh = get_file(&srv, &ada, id(&file)).await.data();
    assert_served(
        &fetch_with(&anonymous, Method::GET, signed_url(&fresh), &[]).await,
        &file,
        &bytes,
    );

    let (path, query) = signed.split_once('?').unwrap();
    let expires: i64 = query
        .strip_prefix("expires=")
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let sig = query.split_once("&sig=").unwrap().1;
    let flip = |c: char| if c == 'A' { 'B' } else { 'A' };
    let flipped_first: String = std::iter::once(flip(sig.chars().next().unwrap()))
        .chain(sig.chars().skip(1))
        .collect();
    let flipped_middle: String = sig
        .chars()
        .enumerate()
        .map(|(i, c)| if i == sig.len() / 2 { flip(c) } else { c })
        .collect();
    let other_query = signed_url(&other).split_once('?').unwrap().1.to_owned();
    for tampered in [
        format!("{path}?expires={expires}&sig={flipped_first}"),
        format!("{path}?expires={expires}&sig={flipped_middle}"),
        format!("{path}?expires={expires}&sig={}", &sig[..sig.len() - 1]),
        format!("{path}?expires={expires}&sig=x{sig}"),
        format!("{path}?expires={}&sig={sig}", expires + 1000),
        format!("{path}?expires={}&sig={sig}", expires - 1),
        format!("{path}?expires=99999999999&sig={sig}"),
        // Another file's valid signature does not fit this file.
        format!("{path}?{other_query}"),
    ] {
        fetch_with(&anonymous, Method::GET, &tampered, &[])
            .await
            .assert_error(403, "FORBIDDEN");
    }
    // The other file's own link still works: tampering hurt nothing.
    assert_eq!(
        fetch_with(&anonymous, Method::GET, signed_url(&other), &[])
            .await
            .status,
        200
    );
}

async fn signed_urls_expire(backend: Backend) {
    let srv = start_with(backend, |c| c.signed_url_ttl = Duration::from_secs(1)).await;
    let ada = srv.register("student").await;
    let bytes = png(130);
    let file = uploaded(&srv, &ada, "brief.png", &bytes, "image/png").await;
    let fresh = get_file(&srv, &ada, id(&file)).await.data();
    let signed = signed_url(&fresh).to_owned();
    assert_served(
        &fetch_with(&srv.client(), Method::GET, &signed, &[]).await,
        &file,
        &bytes,
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    fetch_with(&srv.client(), Method::GET, &signed, &[])
        .await
        .assert_error(403, "FORBIDDEN");
    // The bearer url is unaffected, and a new read gives a new working link.
    assert_served(
        &fetch_with(&as_client(&srv, &ada), Method::GET, url(&file), &[]).await,
        &file,
        &bytes,
    );
    let renewed = get_file(&srv, &ada, id(&file)).await.data();
    assert_served(
        &fetch_with(&srv.client(), Method::GET, signed_url(&renewed), &[]).await,
        &file,
        &bytes,
    );
}

async fn file_endpoints_require_a_token_and_unknown_ids_are_not_found(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let file = uploaded(&srv, &ada, "mine.png", &png(260), "image/png").await;
    let anonymous = srv.client();
    anonymous
        .get(&api("/files"))
        .await
        .assert_error(401, "UNAUTHORIZED");
    anonymous
        .get(&api(&format!("/files/{}", id(&file))))
        .await
        .assert_error(401, "UNAUTHORIZED");
    fetch_with(
        &anonymous,
        Method::GET,
        &api(&format!("/files/{}/download", id(&file))),
        &[],
    )
    .await
    .assert_error(401, "UNAUTHORIZED");
    let reply = anonymous
        .send(
            anonymous
                .request(Method::POST, &api("/files/upload"))
                .multipart(Form::new().part("file", part("x.png", &png(261), "image/png"))),
        )
        .await;
    reply.assert_error(401, "UNAUTHORIZED");
    srv.client()
        .bearer("not.a.token")
        .get(&api("/files"))
        .await
        .assert_error(401, "UNAUTHORIZED");
    assert_disk_holds_only(&srv, &[&file]).await;

    let client = as_client(&srv, &ada);
    for unknown in [UNKNOWN_ID, "not-a-uuid"] {
        client
            .get(&api(&format!("/files/{unknown}")))
            .await
            .assert_error(404, "NOT_FOUND");
        fetch_with(
            &client,
            Method::GET,
            &api(&format!("/files/{unknown}/download")),
            &[],
        )
        .await
        .assert_error(404, "NOT_FOUND");
        client
            .delete(&api(&format!("/files/{unknown}")))
            .await
            .assert_error(404, "NOT_FOUND");
    }
    fetch_with(
        &client,
        Method::GET,
        &format!("/uploads/images/{}.png", "0".repeat(32)),
        &[],
    )
    .await
    .assert_error(404, "NOT_FOUND");
    let wrong_method = client
        .send(client.request(Method::PUT, &api(&format!("/files/{}", id(&file)))))
        .await;
    wrong_method.assert_error(405, "METHOD_NOT_ALLOWED");
}
