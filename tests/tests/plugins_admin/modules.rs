//! Uploaded modules: named by the SHA-256 of their bytes, stored once, listed newest first;
//! anything that is not a policy component this server can run is refused with the reason,
//! and nothing of it is kept.

use super::*;

backend_tests!(
    a_module_is_stored_once_under_the_sha256_of_its_bytes,
    modules_are_listed_newest_first,
    modules_that_cannot_serve_are_refused_with_the_reason_and_not_stored,
);

/// The contract's `module`, checked against the bytes it was made from.
#[track_caller]
fn assert_module(module: &Value, bytes: &[u8], name: &str, world: &str) {
    assert_keys(
        module,
        &[
            "sha256",
            "name",
            "abi",
            "world",
            "witVersion",
            "size",
            "createdAt",
        ],
    );
    assert_eq!(module["sha256"], sha256_hex(bytes), "{module}");
    assert_eq!(module["name"], name, "{module}");
    assert_eq!(module["abi"], "component", "{module}");
    assert_eq!(module["world"], world, "{module}");
    assert_eq!(module["witVersion"], "0.1.0", "{module}");
    assert_eq!(module["size"], bytes.len() as u64, "{module}");
    assert_utc_time(&module["createdAt"]);
}

async fn list(admin: &Client) -> Vec<Value> {
    let reply = admin.get(&plugins("/modules")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let data = reply.data();
    assert_eq!(data["nextCursor"], Value::Null, "{data}");
    data["items"].as_array().unwrap().clone()
}

/// The files in the server's module store.
fn stored_files(srv: &TestServer) -> Vec<String> {
    match std::fs::read_dir(srv.config.plugin_modules_dir()) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn a_module_is_stored_once_under_the_sha256_of_its_bytes(backend: Backend) {
    let srv = start(backend).await;
    let admin = as_client(&srv, &srv.admin().await);
    let bytes = component(fixtures::TEMPLATE);

    let first = upload(&admin, bytes.clone(), Some("blocklist")).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let module = first.data();
    assert_module(&module, &bytes, "blocklist", "chat-moderation");

    // The same bytes again, under another name: the module already known, unchanged.
    let again = upload(&admin, bytes.clone(), Some("another name")).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.data(), module);
    assert_eq!(list(&admin).await, std::slice::from_ref(&module));
    let sha = module["sha256"].as_str().unwrap();
    assert_eq!(stored_files(&srv), [format!("{sha}.wasm")]);

    // Without a name, the module is named after its hash.
    let panic = component(fixtures::PANIC);
    let unnamed = upload(&admin, panic.clone(), None).await;
    assert_eq!(unnamed.status, 201, "{}", unnamed.body);
    let sha = sha256_hex(&panic);
    assert_module(
        &unnamed.data(),
        &panic,
        &format!("module-{}", &sha[..12]),
        // It fits every slot; the world it reports is the first it exports.
        unnamed.data()["world"].as_str().unwrap(),
    );

    // A name must be a name.
    for name in ["   ", &"n".repeat(65)] {
        let reply = upload(&admin, component(fixtures::SLOW), Some(name)).await;
        reply.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(reply.field(), "name", "{}", reply.body);
    }
}

async fn modules_are_listed_newest_first(backend: Backend) {
    let srv = start(backend).await;
    let admin = as_client(&srv, &srv.admin().await);
    assert_eq!(list(&admin).await, Vec::<Value>::new());
    let mut uploaded = Vec::new();
    for (path, name) in [
        (fixtures::TEMPLATE, "first"),
        (fixtures::SLOW, "second"),
        (fixtures::PANIC, "third"),
    ] {
        uploaded.push(install(&admin, path, name).await);
        // createdAt has a resolution the order can rely on, but not within one tick.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let listed: Vec<String> = list(&admin)
        .await
        .iter()
        .map(|m| m["sha256"].as_str().unwrap().to_owned())
        .collect();
    uploaded.reverse();
    assert_eq!(listed, uploaded);

    // Paged like every list, the cursor naming the last module of the page.
    let first = admin.get(&plugins("/modules?limit=2")).await.data();
    let shas = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["sha256"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(shas(&first), uploaded[..2]);
    assert_eq!(first["nextCursor"], uploaded[1].as_str());
    let next = admin
        .get(&plugins(&format!(
            "/modules?limit=2&cursor={}",
            uploaded[1]
        )))
        .await
        .data();
    assert_eq!(shas(&next), uploaded[2..]);
    assert_eq!(next["nextCursor"], Value::Null);
    for bad in ["limit=0", "limit=101", "cursor=somewhere"] {
        let reply = admin.get(&plugins(&format!("/modules?{bad}"))).await;
        reply.assert_error(400, "VALIDATION_FAILED");
    }
}

async fn modules_that_cannot_serve_are_refused_with_the_reason_and_not_stored(backend: Backend) {
    let limit: u64 = 128 * 1024;
    let srv = start_adjusted(backend, |c| c.plugin_module_max_bytes = limit).await;
    let admin = as_client(&srv, &srv.admin().await);

    // A WebAssembly core module: right magic, but not a component.
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let refusals = [
        (
            "garbage",
            b"MZ\x90\0 this is not WebAssembly".to_vec(),
            "not_wasm",
        ),
        ("empty", Vec::new(), "not_wasm"),
        (
            "wrong world",
            component(fixtures::WRONG_WORLD),
            "wrong_world",
        ),
        ("core module", core_module, "wrong_world"),
        (
            "wasi filesystem",
            component(fixtures::WASI_FILESYSTEM),
            "forbidden_import",
        ),
    ];
    for (what, bytes, reason) in refusals {
        let reply = upload(&admin, bytes, Some(what)).await;
        assert_refused(&reply, reason);
        if reason == "forbidden_import" {
            let imports = reply.body["error"]["details"]["imports"]
                .as_array()
                .unwrap_or_else(|| panic!("no details.imports: {}", reply.body));
            // Every import it may not have is named, the file system among them.
            let named = |prefix: &str| {
                imports
                    .iter()
                    .filter(|i| i.as_str().is_some_and(|i| i.starts_with(prefix)))
                    .count()
            };
            assert!(named("wasi:filesystem/") > 0, "{}", reply.body);
            assert_eq!(named("lyceum:policy/"), 0, "{}", reply.body);
        }
    }

    // One byte over the limit is too large, whatever it holds.
    let mut oversized = component(fixtures::TEMPLATE);
    assert!((oversized.len() as u64) < limit);
    oversized.resize(limit as usize + 1, 0);
    upload(&admin, oversized, Some("oversized"))
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");

    // A form without a module.
    let form = Form::new().text("name", "no file");
    let reply = admin
        .send(
            admin
                .request(Method::POST, &plugins("/modules"))
                .multipart(form),
        )
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), "file", "{}", reply.body);

    assert_eq!(list(&admin).await, Vec::<Value>::new());
    assert_eq!(stored_files(&srv), Vec::<String>::new());

    // The server still takes a good module afterwards.
    install(&admin, fixtures::TEMPLATE, "template").await;
    assert_eq!(list(&admin).await.len(), 1);
}
