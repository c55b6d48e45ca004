//! ICE servers for WebRTC clients: configured STUN URLs, and TURN URLs with short-lived
//! credentials in the form coturn's `use-auth-secret` checks: the username is
//! `<expiry unix time>:<userId>` and the credential is base64(HMAC-SHA1(secret, username)).

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;
use utoipa::ToSchema;

use crate::{config::Secret, domain::UserId};

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IceServers {
    pub ice_servers: Vec<IceServer>,
}

pub struct IceService {
    stun_urls: Vec<String>,
    turn_urls: Vec<String>,
    turn_secret: Option<Secret>,
    ttl: Duration,
}

impl IceService {
    pub fn new(
        stun_urls: Vec<String>,
        turn_urls: Vec<String>,
        turn_secret: Option<Secret>,
        ttl: Duration,
    ) -> Self {
        IceService {
            stun_urls,
            turn_urls,
            turn_secret,
            ttl,
        }
    }

    pub fn for_user(&self, user: UserId) -> IceServers {
        let mut servers = Vec::new();
        if !self.stun_urls.is_empty() {
            servers.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if !self.turn_urls.is_empty() {
            let (username, credential) = match &self.turn_secret {
                Some(secret) => {
                    let expiry = chrono::Utc::now().timestamp() + self.ttl.as_secs() as i64;
                    let username = format!("{expiry}:{user}");
                    let credential = turn_credential(secret.expose(), &username);
                    (Some(username), Some(credential))
                }
                None => (None, None),
            };
            servers.push(IceServer {
                urls: self.turn_urls.clone(),
                username,
                credential,
            });
        }
        IceServers {
            ice_servers: servers,
        }
    }
}

pub fn turn_credential(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_follow_the_coturn_rest_scheme() {
        // Reference value computed independently: HMAC-SHA1("secret", "1700000000:alice").
        assert_eq!(
            turn_credential("secret", "1700000000:alice"),
            "d8soP47RbdIKLDUOpnJPVQyq5Ts="
        );
        let service = IceService::new(
            vec!["stun:stun.example.org:3478".into()],
            vec!["turn:turn.example.org:3478".into()],
            Some(Secret::new("s3cret")),
            Duration::from_secs(3600),
        );
        let user = UserId::new();
        let servers = service.for_user(user).ice_servers;
        assert_eq!(servers.len(), 2);
        let turn = &servers[1];
        let username = turn.username.clone().unwrap();
        let (expiry, who) = username.split_once(':').unwrap();
        assert_eq!(who, user.to_string());
        let expiry: i64 = expiry.parse().unwrap();
        assert!(expiry > chrono::Utc::now().timestamp() + 3500);
        assert_eq!(
            turn.credential.clone().unwrap(),
            turn_credential("s3cret", &username)
        );
    }
}
