//! What can go wrong in a `lyceum plugin` command, and how each case ends the process: a
//! usage error exits 2, a refusal (by the offline check or by the server) exits 1.

use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line cannot be acted on: a malformed argument, an unreadable file, no
    /// token.
    #[error("{0}")]
    Usage(String),
    /// The offline check refused the module, with the reason the admin API would give.
    #[error("refused ({reason}): {message}")]
    Refused {
        reason: String,
        message: String,
        imports: Vec<String>,
    },
    /// The server answered with the contract's error envelope.
    #[error("{}", api_line(.code, .message, .reason.as_deref()))]
    Api {
        code: String,
        message: String,
        reason: Option<String>,
        /// `error` of the envelope as received, for `--json` (boxed: errors stay small).
        body: Box<Value>,
    },
    /// No answer, or an answer that is not from a Lyceum server.
    #[error("{0}")]
    Transport(String),
    /// The command failed on this machine (the WebAssembly engine could not be set up).
    #[error("{0}")]
    Internal(String),
}

fn api_line(code: &str, message: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("{code} ({reason}): {message}"),
        None => format!("{code}: {message}"),
    }
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }

    /// The error for `--json`: the offline check's `{reason, message, imports?}`, the
    /// server's `error` object as it sent it, or `{message}`.
    pub fn to_json(&self) -> Value {
        match self {
            CliError::Refused {
                reason,
                message,
                imports,
            } if imports.is_empty() => json!({ "reason": reason, "message": message }),
            CliError::Refused {
                reason,
                message,
                imports,
            } => json!({ "reason": reason, "message": message, "imports": imports }),
            CliError::Api { body, .. } => (**body).clone(),
            CliError::Usage(message)
            | CliError::Transport(message)
            | CliError::Internal(message) => {
                json!({ "message": message })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_error_reads_as_its_code_reason_and_message() {
        let error = CliError::Api {
            code: "VALIDATION_FAILED".into(),
            message: "The component imports `wasi:filesystem/types@0.2.6`".into(),
            reason: Some("forbidden_import".into()),
            body: Box::new(json!({"details": {"imports": ["wasi:filesystem/types@0.2.6"]}})),
        };
        assert_eq!(
            error.to_string(),
            "VALIDATION_FAILED (forbidden_import): The component imports `wasi:filesystem/types@0.2.6`"
        );
        assert_eq!(error.exit_code(), 1);
    }

    #[test]
    fn only_usage_errors_exit_2() {
        assert_eq!(CliError::usage("no token").exit_code(), 2);
        assert_eq!(CliError::Transport("refused".into()).exit_code(), 1);
        let refused = CliError::Refused {
            reason: "not_wasm".into(),
            message: "The file is not WebAssembly".into(),
            imports: vec![],
        };
        assert_eq!(refused.exit_code(), 1);
        assert_eq!(
            refused.to_json(),
            json!({"reason": "not_wasm", "message": "The file is not WebAssembly"})
        );
    }
}
