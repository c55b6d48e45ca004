//! Assertions and small helpers the API test files share.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Account, Client, TestServer};

/// A well-formed UUIDv7 that names nothing.
pub const UNKNOWN_ID: &str = "0190a000-0000-7000-8000-000000000000";

/// `/api/v1` + `path`.
pub fn api(path: &str) -> String {
    format!("/api/v1{path}")
}

pub fn as_client(srv: &TestServer, who: &Account) -> Client {
    srv.client().bearer(&who.token)
}

#[track_caller]
pub fn id_of(value: &Value) -> &str {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {value}"))
}

pub fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|i| id_of(i).to_owned()).collect()
}

#[track_caller]
pub fn assert_keys(value: &Value, expected: &[&str]) {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("{value} is not an object"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = expected.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "in {value}");
}

#[track_caller]
pub fn assert_uuid_v7(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"));
    let uuid = uuid::Uuid::parse_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(uuid.get_version_num(), 7, "{text} is not a UUIDv7");
}

#[track_caller]
pub fn assert_utc_time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"));
    assert!(text.ends_with('Z'), "{text} is not written in UTC");
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&chrono::Utc)
}

/// The SHA-256 of `bytes` in lower-case hex, as the API reports digests.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
