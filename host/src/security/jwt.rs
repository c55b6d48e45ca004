//! Access tokens: HS256 JWTs carrying who the caller is.
//!
//! Validation pins the algorithm and checks issuer, audience, expiry and not-before, so a token
//! with `alg: none`, another algorithm, an edited payload or a foreign key is refused.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
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
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid access token: {0}")]
pub struct InvalidToken(String);

impl JwtKeys {
    pub fn new(secret: &[u8], issuer: &str, audience: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // A little slack for clocks of several nodes; far below the token lifetime.
        validation.leeway = 5;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
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
        };
        Ok(encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| InvalidToken(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&[7u8; 32], "lyceum", "lyceum-api", Duration::from_secs(60))
    }

    #[test]
    fn round_trips_and_refuses_other_keys() {
        let token = keys()
            .issue(UserId::new(), Role::Student, TokenFamilyId::new())
            .unwrap();
        assert!(keys().verify(&token).is_ok());
        let other = JwtKeys::new(&[8u8; 32], "lyceum", "lyceum-api", Duration::from_secs(60));
        assert!(other.verify(&token).is_err());
        let other_audience =
            JwtKeys::new(&[7u8; 32], "lyceum", "elsewhere", Duration::from_secs(60));
        assert!(other_audience.verify(&token).is_err());
    }
}
