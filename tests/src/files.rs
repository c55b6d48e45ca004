//! Uploads through the files API as a browser sends them: a multipart form with a `file` part.

use reqwest::{
    Method,
    multipart::{Form, Part},
};

use crate::{
    Account, Reply, TestServer,
    check::{api, as_client},
};

/// A `file` part named `name`, holding `bytes` declared as `mime`.
pub fn part(name: &str, bytes: &[u8], mime: &str) -> Part {
    Part::bytes(bytes.to_vec())
        .file_name(name.to_owned())
        .mime_str(mime)
        .unwrap()
}

/// POSTs `form` to the upload endpoint (with `query`, which starts with `?` when not empty).
pub async fn upload_form(srv: &TestServer, who: &Account, query: &str, form: Form) -> Reply {
    let client = as_client(srv, who);
    client
        .send(
            client
                .request(Method::POST, &api(&format!("/files/upload{query}")))
                .multipart(form),
        )
        .await
}
