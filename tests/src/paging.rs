//! Walking a cursor-paged list (`?limit=` and `?cursor=`, answered with `items` and
//! `nextCursor`) from a page to the last.

use serde_json::Value;

use crate::{Client, check::assert_keys};

/// Follows `nextCursor` from the first page to the last and returns the pages. Every page
/// that announces a successor must be full; the last one says `nextCursor: null`.
pub async fn walk(client: &Client, path: &str, limit: usize) -> Vec<Vec<Value>> {
    walk_from(client, path, limit, None).await
}

/// [`walk`], starting after `cursor` (a `nextCursor` obtained earlier).
pub async fn walk_from(
    client: &Client,
    path: &str,
    limit: usize,
    cursor: Option<String>,
) -> Vec<Vec<Value>> {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut pages = Vec::new();
    let mut cursor = cursor;
    while pages.len() < 50 {
        let url = match &cursor {
            Some(c) => format!("{path}{separator}limit={limit}&cursor={c}"),
            None => format!("{path}{separator}limit={limit}"),
        };
        let reply = client.get(&url).await;
        assert_eq!(reply.status, 200, "{url}: {}", reply.body);
        let data = reply.data();
        assert_keys(&data, &["items", "nextCursor"]);
        let items = data["items"].as_array().unwrap().clone();
        assert!(items.len() <= limit, "{url} returned {} items", items.len());
        pages.push(items);
        match &data["nextCursor"] {
            Value::String(next) => {
                assert_eq!(
                    pages.last().unwrap().len(),
                    limit,
                    "a page with a successor is full"
                );
                cursor = Some(next.clone());
            }
            Value::Null => return pages,
            other => panic!("nextCursor {other}"),
        }
    }
    panic!("{path} never reached its last page");
}
