//! Every route of the plugin admin API is in the OpenAPI document, with its methods.

use super::*;

backend_tests!(the_openapi_document_lists_every_plugin_route);

async fn the_openapi_document_lists_every_plugin_route(backend: Backend) {
    let srv = start(backend).await;
    let reply = srv.client().get("/api/openapi.json").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let paths = &reply.body["paths"];
    let expected = [
        ("/api/v1/plugins", vec!["get"]),
        ("/api/v1/plugins/modules", vec!["get", "post"]),
        ("/api/v1/plugins/decisions", vec!["get"]),
        ("/api/v1/plugins/{slot}", vec!["get", "put"]),
        ("/api/v1/plugins/{slot}/rollback", vec!["post"]),
        ("/api/v1/plugins/{slot}/revisions", vec!["get"]),
        ("/api/v1/plugins/{slot}/shadow", vec!["put", "delete"]),
        ("/api/v1/plugins/{slot}/shadow/promote", vec!["post"]),
    ];
    for (path, methods) in &expected {
        let item = &paths[*path];
        assert!(item.is_object(), "{path} is not documented");
        for method in methods {
            let operation = &item[*method];
            assert!(operation.is_object(), "{method} {path} is not documented");
            assert!(
                operation["security"].is_array(),
                "{method} {path} does not say it needs a token"
            );
            assert!(
                operation["responses"]["403"].is_object(),
                "{method} {path} does not document FORBIDDEN"
            );
        }
    }
    let documented: Vec<&str> = paths
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|p| p.starts_with("/api/v1/plugins"))
        .collect();
    assert_eq!(documented.len(), expected.len(), "{documented:?}");
}
