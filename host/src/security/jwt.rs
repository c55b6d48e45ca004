//! Access tokens: HS256 JWTs carrying who the caller is.
//!
//! Validation pins the algorithm, picks the key by the header's `kid` among the configured
//! ones only (a `jwk`, `jku` or `x5u` in the header is never looked at), and requires every
//! claim with its JSON type: `exp`, `nbf` and `iat` as integers, `iss`, `aud`, `sub`, and
//! `typ: "access"`. A token with `alg: none`, another algorithm, an edited payload, a foreign
//! or unknown key, a missing claim or a claim of the wrong type (a string `nbf` once skipped
//! its check in `jsonwebtoken` before 10.3) is refused.
//!
//! Keys rotate without logging anyone out: the current secret signs, and retired secrets
//! still verify the tokens they signed until those expire (one access-token lifetime).

use std::{collections::HashMap, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{Role, TokenFamilyId, UserId};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
    /// The refresh-token family this token was issued from; revoking the family disconnects
    /// the sockets that authenticated with it.
    pub sid: TokenFamilyId,
    /// Always `access`: no other kind of token is a JWT today, and one added later (a
    /// signed-URL or invitation token, say) must not pass for an access token.
    pub typ: TokenType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
}

pub struct JwtKeys {
    signing_kid: String,
    encoding: EncodingKey,
    /// The signing key and every retired one, by key id.
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid access token: {0}")]
pub struct InvalidToken(String);

impl JwtKeys {
    /// Keys that sign with `secret` and verify only what it signed.
    pub fn new(secret: &[u8], issuer: &str, audience: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // A little slack for clocks of several nodes; far below the token lifetime.
        validation.leeway = 5;
        let signing_kid = key_id(secret);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: HashMap::from([(signing_kid.clone(), DecodingKey::from_secret(secret))]),
            signing_kid,
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    /// Also accepts tokens signed by these earlier secrets (never signs with them).
    pub fn accepting_retired<'a>(mut self, retired: impl IntoIterator<Item = &'a [u8]>) -> Self {
        for secret in retired {
            self.decoding
                .entry(key_id(secret))
                .or_insert_with(|| DecodingKey::from_secret(secret));
        }
        self
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The `kid` of the tokens this server signs now.
    pub fn signing_key_id(&self) -> &str {
        &self.signing_kid
    }

    pub fn issue(&self, user: UserId, role: Role, family: TokenFamilyId) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + self.ttl.as_secs() as i64,
            jti: Uuid::now_v7(),
            sid: family,
            typ: TokenType::Access,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing_kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| InvalidToken(e.to_string()))?;
        let kid = header
            .kid
            .ok_or_else(|| InvalidToken("the token names no key (kid)".into()))?;
        let key = self.decoding.get(&kid).ok_or_else(|| {
            InvalidToken("the token's key (kid) is not one of this server's".into())
        })?;
        decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| InvalidToken(e.to_string()))
    }
}

/// A key's public name: a hash of the secret, so nodes sharing a secret agree on it without
/// configuring one, and it tells nothing about the secret.
fn key_id(secret: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"lyceum access-token key id\0")
        .chain_update(secret)
        .finalize();
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use hmac::{Hmac, Mac};
    use serde_json::{Value, json};

    use super::*;

    const SECRET: [u8; 32] = [7u8; 32];

    fn keys() -> JwtKeys {
        JwtKeys::new(&SECRET, "lyceum", "lyceum-api", Duration::from_secs(60))
    }

    fn token() -> String {
        keys()
            .issue(UserId::new(), Role::Student, TokenFamilyId::new())
            .unwrap()
    }

    fn part(token: &str, index: usize) -> Value {
        let segment = token.split('.').nth(index).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    /// A token with this header and payload, correctly signed with `secret`: what someone
    /// holding the key could mint, so only the claims' rules can refuse it.
    fn signed(header: &Value, claims: &Value, secret: &[u8]) -> String {
        let head = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{head}.{body}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{head}.{body}.{sig}")
    }

    /// A valid token's header and claims with one claim changed (`Value::Null` removes it).
    fn with_claim(name: &str, value: Value) -> String {
        let original = token();
        let mut claims = part(&original, 1);
        match value {
            Value::Null => {
                claims.as_object_mut().unwrap().remove(name);
            }
            value => claims[name] = value,
        }
        signed(&part(&original, 0), &claims, &SECRET)
    }

    #[test]
    fn round_trips_and_refuses_other_keys() {
        let token = token();
        let claims = keys().verify(&token).unwrap();
        assert_eq!(claims.typ, TokenType::Access);
        let other = JwtKeys::new(&[8u8; 32], "lyceum", "lyceum-api", Duration::from_secs(60));
        assert!(other.verify(&token).is_err());
        let other_audience = JwtKeys::new(&SECRET, "lyceum", "elsewhere", Duration::from_secs(60));
        assert!(other_audience.verify(&token).is_err());
        let other_issuer =
            JwtKeys::new(&SECRET, "elsewhere", "lyceum-api", Duration::from_secs(60));
        assert!(other_issuer.verify(&token).is_err());
    }

    #[test]
    fn the_hand_made_signer_of_these_tests_matches_the_library() {
        // Otherwise every refusal below could come from a bad signature, not the claim.
        let original = token();
        let resigned = signed(&part(&original, 0), &part(&original, 1), &SECRET);
        assert!(keys().verify(&resigned).is_ok());
    }

    #[test]
    fn every_time_claim_must_be_an_integer_and_present() {
        let far_future = chrono::Utc::now().timestamp() + 3_600;
        let refused = [
            ("nbf", json!(far_future.to_string())),
            ("nbf", json!(far_future as f64 + 0.5)),
            ("nbf", Value::Null),
            ("exp", json!((far_future + 60).to_string())),
            ("exp", json!(far_future as f64 + 0.5)),
            ("exp", Value::Null),
            ("iat", json!("0")),
            ("iat", json!(1.5)),
            ("iat", Value::Null),
        ];
        for (name, value) in refused {
            let token = with_claim(name, value.clone());
            assert!(
                keys().verify(&token).is_err(),
                "{name} = {value} was accepted"
            );
        }
        // A future `nbf` as an integer is refused too: the check runs, it is not skipped.
        assert!(
            keys()
                .verify(&with_claim("nbf", json!(far_future)))
                .is_err()
        );
    }

    #[test]
    fn issuer_audience_subject_and_type_are_required() {
        for name in ["iss", "aud", "sub", "typ"] {
            let token = with_claim(name, Value::Null);
            assert!(
                keys().verify(&token).is_err(),
                "a token without {name} was accepted"
            );
        }
        for (name, value) in [
            ("iss", json!(["lyceum"])),
            ("aud", json!(7)),
            ("typ", json!("refresh")),
            ("typ", json!("ACCESS")),
        ] {
            let token = with_claim(name, value.clone());
            assert!(
                keys().verify(&token).is_err(),
                "{name} = {value} was accepted"
            );
        }
    }

    #[test]
    fn the_key_comes_from_the_configuration_never_from_the_header() {
        let original = token();
        let claims = part(&original, 1);
        let attacker = [9u8; 32];
        let kid = keys().signing_key_id().to_owned();
        // Signed by the attacker's key and pointing at it in every way a header can.
        let jwk = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(attacker)});
        for header in [
            json!({"alg": "HS256", "typ": "JWT", "kid": kid, "jwk": jwk}),
            json!({"alg": "HS256", "typ": "JWT", "kid": kid, "jku": "https://evil.example/keys"}),
            json!({"alg": "HS256", "typ": "JWT", "kid": kid, "x5u": "https://evil.example/cert"}),
        ] {
            assert!(
                keys().verify(&signed(&header, &claims, &attacker)).is_err(),
                "{header}"
            );
        }
        // The right key but no kid, or a kid this server does not have.
        let no_kid = json!({"alg": "HS256", "typ": "JWT"});
        assert!(keys().verify(&signed(&no_kid, &claims, &SECRET)).is_err());
        let unknown = json!({"alg": "HS256", "typ": "JWT", "kid": "0123456789abcdef01234567"});
        assert!(keys().verify(&signed(&unknown, &claims, &SECRET)).is_err());
        // `alg: none` and a different HMAC.
        let none = json!({"alg": "none", "typ": "JWT", "kid": kid});
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&none).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        );
        assert!(keys().verify(&unsigned).is_err());
    }

    #[test]
    fn retired_keys_verify_what_they_signed_and_sign_nothing() {
        let old = [1u8; 32];
        let new = [2u8; 32];
        let before = JwtKeys::new(&old, "lyceum", "lyceum-api", Duration::from_secs(60));
        let old_token = before
            .issue(UserId::new(), Role::Student, TokenFamilyId::new())
            .unwrap();

        let rotated = JwtKeys::new(&new, "lyceum", "lyceum-api", Duration::from_secs(60))
            .accepting_retired([&old[..]]);
        assert!(
            rotated.verify(&old_token).is_ok(),
            "logged out by a rotation"
        );
        let new_token = rotated
            .issue(UserId::new(), Role::Student, TokenFamilyId::new())
            .unwrap();
        assert_eq!(part(&new_token, 0)["kid"], rotated.signing_key_id());
        assert_ne!(rotated.signing_key_id(), before.signing_key_id());
        assert!(
            before.verify(&new_token).is_err(),
            "signed with the retired key"
        );

        // Once the old secret is dropped from the configuration, its tokens stop working.
        let after = JwtKeys::new(&new, "lyceum", "lyceum-api", Duration::from_secs(60));
        assert!(after.verify(&old_token).is_err());
    }
}
