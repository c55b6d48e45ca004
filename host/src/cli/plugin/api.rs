//! The admin API of a running server as the command line calls it: bearer token, the
//! contract's envelope unwrapped into `data`, its error turned into [`CliError::Api`].

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode, multipart};
use serde::Serialize;
use serde_json::Value;

use super::error::CliError;
use crate::config::Secret;

/// Activating a chain compiles and smoke-tests every plugin of it before the server answers.
const TIMEOUT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Api {
    http: reqwest::Client,
    /// `…/api/v1`, without a trailing slash.
    root: String,
    token: Secret,
}

impl Api {
    /// `url` is the server's address (`http://host:port`), with or without `/api/v1`.
    pub fn new(url: &str, token: Option<Secret>) -> Result<Self, CliError> {
        let token = token.filter(|t| !t.expose().trim().is_empty()).ok_or_else(|| {
            CliError::usage(
                "no token: set LYCEUM_TOKEN (or pass --token) to an administrator's access token",
            )
        })?;
        let url = url.trim().trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CliError::usage(format!(
                "`{url}` is not a server address such as http://127.0.0.1:3000"
            )));
        }
        let base = url.strip_suffix("/api/v1").unwrap_or(url);
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("lyceum-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Transport(format!("cannot set up HTTP: {e}")))?;
        Ok(Api {
            http,
            root: format!("{base}/api/v1"),
            token,
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.root))
            .bearer_auth(self.token.expose())
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        let (_, data) = send(self.request(Method::GET, path).query(query)).await?;
        Ok(data)
    }

    pub async fn put(&self, path: &str, body: &impl Serialize) -> Result<Value, CliError> {
        let (_, data) = send(self.request(Method::PUT, path).json(body)).await?;
        Ok(data)
    }

    pub async fn post(&self, path: &str) -> Result<Value, CliError> {
        let (_, data) = send(self.request(Method::POST, path)).await?;
        Ok(data)
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        let (_, data) = send(self.request(Method::DELETE, path)).await?;
        Ok(data)
    }

    /// `POST /plugins/modules`; the module and whether the server did not know it before.
    pub async fn upload(
        &self,
        file_name: String,
        bytes: Vec<u8>,
        name: Option<String>,
    ) -> Result<(Value, bool), CliError> {
        let part = multipart::Part::bytes(bytes)
            .file_name(file_name)
            .mime_str("application/wasm")
            .map_err(|e| CliError::Transport(e.to_string()))?;
        let mut form = multipart::Form::new().part("file", part);
        if let Some(name) = name {
            form = form.text("name", name);
        }
        let (status, data) = send(
            self.request(Method::POST, "/plugins/modules")
                .multipart(form),
        )
        .await?;
        Ok((data, status == StatusCode::CREATED))
    }
}

/// Sends the request and unwraps the envelope.
async fn send(request: RequestBuilder) -> Result<(StatusCode, Value), CliError> {
    let response = request.send().await.map_err(no_answer)?;
    let status = response.status();
    let url = response.url().clone();
    let text = response.text().await.map_err(no_answer)?;
    let not_lyceum = || {
        CliError::Transport(format!(
            "{url} answered {status} without a Lyceum envelope; is this the server's address?"
        ))
    };
    let body: Value = serde_json::from_str(&text).map_err(|_| not_lyceum())?;
    match body.get("success").and_then(Value::as_bool) {
        Some(true) => Ok((status, body.get("data").cloned().unwrap_or(Value::Null))),
        Some(false) => {
            let error = body.get("error").cloned().unwrap_or(Value::Null);
            let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
            Err(CliError::Api {
                code: text("code").unwrap_or_else(|| status.as_str().to_owned()),
                message: text("message").unwrap_or_default(),
                reason: error["details"]["reason"].as_str().map(str::to_owned),
                body: Box::new(error),
            })
        }
        None => Err(not_lyceum()),
    }
}

/// The innermost cause, which says what happened ("Connection refused"), after the URL.
fn no_answer(error: reqwest::Error) -> CliError {
    let mut cause: &dyn std::error::Error = &error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let target = error
        .url()
        .map(|u| u.as_str().to_owned())
        .unwrap_or_default();
    if error.is_timeout() {
        CliError::Transport(format!("no answer from {target} in time"))
    } else {
        CliError::Transport(format!("cannot reach {target}: {cause}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_may_be_given_with_or_without_the_api_prefix() {
        for url in [
            "http://127.0.0.1:3000",
            "http://127.0.0.1:3000/",
            "http://127.0.0.1:3000/api/v1",
            "http://127.0.0.1:3000/api/v1/",
        ] {
            let api = Api::new(url, Some(Secret::new("t"))).unwrap();
            assert_eq!(api.root, "http://127.0.0.1:3000/api/v1", "{url}");
        }
    }

    #[test]
    fn no_token_and_no_scheme_are_usage_errors() {
        let no_token = Api::new("http://127.0.0.1:3000", None).err().unwrap();
        assert_eq!(no_token.exit_code(), 2);
        let blank = Api::new("http://127.0.0.1:3000", Some(Secret::new(" ")))
            .err()
            .unwrap();
        assert_eq!(blank.exit_code(), 2);
        let no_scheme = Api::new("127.0.0.1:3000", Some(Secret::new("t")))
            .err()
            .unwrap();
        assert!(no_scheme.to_string().contains("not a server address"));
    }
}
