//! The five kinds of call, each described once for the chain fold: how to ask one plugin,
//! what its verdict means for the next plugin and for the chain, and what the host accepts
//! as an answer.

use std::ops::ControlFlow;

use sha2::{Digest, Sha256};
use tracing::Span;
use tracing::field::Empty;

use super::Outcome;
use crate::error::FailureKind;
use crate::status::VerdictSummary;
use crate::types::{
    FileFinish, FilePrecheck, FileVerdict, JoinCheck, JoinVerdict, ModerationDecision,
    ModerationInput, ModerationVerdict, PolicyContext, Refusal, SignalCheck, SignalVerdict,
};
use crate::wasm::Loaded;

/// What the host accepts from a plugin that rewrites or corrects: an answer outside these
/// rules is a failure of that plugin (its failure mode applies), never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostRules {
    /// Most characters (code points) of a chat message, as for a client's message.
    pub max_message_chars: usize,
    /// Most bytes of a signaling payload.
    pub max_signal_bytes: usize,
    /// Most characters of a file name.
    pub max_file_name_chars: usize,
}

impl Default for HostRules {
    fn default() -> Self {
        Self {
            max_message_chars: 4000,
            max_signal_bytes: 64 * 1024,
            max_file_name_chars: 255,
        }
    }
}

/// The folders an upload may be put in.
const FOLDERS: [&str; 4] = ["documents", "images", "videos", "misc"];

/// One kind of call, folded over a chain.
pub(crate) trait Call {
    /// One plugin's answer.
    type Verdict;
    /// The chain's answer.
    type Decision;

    fn span(plugin: &str) -> Span;
    fn invoke(&self, loaded: &Loaded) -> Result<Self::Verdict, FailureKind>;
    fn outcome(verdict: &Self::Verdict) -> Outcome;
    /// Whether the host's rules accept the answer.
    fn acceptable(&self, verdict: &Self::Verdict, rules: &HostRules) -> bool;
    /// The refusal code or flag reason, for the audit.
    fn reason(verdict: &Self::Verdict) -> Option<String>;
    /// Takes one plugin's answer in; `Break` ends the chain with its decision.
    fn absorb(&mut self, verdict: Self::Verdict) -> ControlFlow<Self::Decision>;
    /// The decision when every plugin had its say.
    fn finish(self) -> Self::Decision;
    fn summary(decision: &Self::Decision) -> VerdictSummary;
    fn content_sha256(&self) -> Option<String>;
    fn subject(&self) -> Option<String>;
    fn context(&self) -> &PolicyContext;
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn summary(verdict: &str, reason: Option<&str>) -> VerdictSummary {
    VerdictSummary {
        verdict: verdict.to_owned(),
        reason: reason.map(str::to_owned),
    }
}

/// Most characters of a refusal's reason or a flag's reason that reach callers.
const REASON_MAX_CHARS: usize = 500;

/// Whether `text` has at most `max` characters, without counting all of a huge one: a
/// character is at most four bytes.
fn within_chars(text: &str, max: usize) -> bool {
    text.len() <= max || (text.len() <= max.saturating_mul(4) && text.chars().count() <= max)
}

/// A flag's reason as callers get it: at most [`REASON_MAX_CHARS`] characters.
fn tidy_flag(reason: String) -> String {
    if within_chars(&reason, REASON_MAX_CHARS) {
        return reason;
    }
    reason.chars().take(REASON_MAX_CHARS).collect()
}

/// Keeps what plugins say within what clients expect: a snake_case code of at most 64
/// characters and a reason of at most 500.
pub(crate) fn tidy(refusal: Refusal) -> Refusal {
    let mut code: String = refusal
        .code
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if code.is_empty() {
        code = "rejected_by_policy".to_owned();
    }
    let mut reason: String = refusal
        .reason
        .trim()
        .chars()
        .take(REASON_MAX_CHARS)
        .collect();
    if reason.is_empty() {
        reason = "Refused by policy.".to_owned();
    }
    Refusal { code, reason }
}

fn code_of(refusal: &Refusal) -> String {
    tidy(refusal.clone()).code
}

pub(crate) struct Moderate<'a> {
    pub(crate) ctx: &'a PolicyContext,
    pub(crate) input: &'a ModerationInput,
    rewritten: Option<String>,
    flags: Vec<String>,
}

impl<'a> Moderate<'a> {
    pub(crate) fn new(ctx: &'a PolicyContext, input: &'a ModerationInput) -> Self {
        Self {
            ctx,
            input,
            rewritten: None,
            flags: Vec::new(),
        }
    }
}

impl Call for Moderate<'_> {
    type Verdict = ModerationVerdict;
    type Decision = ModerationDecision;

    fn span(plugin: &str) -> Span {
        tracing::info_span!("plugin.moderate", plugin, outcome = Empty)
    }

    fn invoke(&self, loaded: &Loaded) -> Result<ModerationVerdict, FailureKind> {
        let content = self.rewritten.as_deref().unwrap_or(&self.input.content);
        loaded.moderate(self.ctx, self.input, content)
    }

    fn outcome(verdict: &ModerationVerdict) -> Outcome {
        match verdict {
            ModerationVerdict::Allow => Outcome::Allow,
            ModerationVerdict::Reject(_) => Outcome::Reject,
            ModerationVerdict::Rewrite { .. } => Outcome::Rewrite,
            ModerationVerdict::Flag { .. } => Outcome::Flag,
        }
    }

    fn acceptable(&self, verdict: &ModerationVerdict, rules: &HostRules) -> bool {
        match verdict {
            ModerationVerdict::Rewrite { content } => {
                !content.trim().is_empty() && within_chars(content, rules.max_message_chars)
            }
            _ => true,
        }
    }

    fn reason(verdict: &ModerationVerdict) -> Option<String> {
        match verdict {
            ModerationVerdict::Reject(r) => Some(code_of(r)),
            ModerationVerdict::Flag { reason } => {
                Some(reason.chars().take(REASON_MAX_CHARS).collect())
            }
            _ => None,
        }
    }

    fn absorb(&mut self, verdict: ModerationVerdict) -> ControlFlow<ModerationDecision> {
        match verdict {
            ModerationVerdict::Allow => {}
            ModerationVerdict::Reject(refusal) => {
                return ControlFlow::Break(ModerationDecision::Reject(tidy(refusal)));
            }
            ModerationVerdict::Rewrite { content } => self.rewritten = Some(content),
            ModerationVerdict::Flag { reason } => self.flags.push(tidy_flag(reason)),
        }
        ControlFlow::Continue(())
    }

    fn finish(self) -> ModerationDecision {
        ModerationDecision::Allow {
            content: self.rewritten,
            flags: self.flags,
        }
    }

    fn summary(decision: &ModerationDecision) -> VerdictSummary {
        match decision {
            ModerationDecision::Reject(r) => summary("reject", Some(&r.code)),
            ModerationDecision::Allow { flags, .. } if !flags.is_empty() => {
                summary("flag", Some(&flags.join("; ")))
            }
            ModerationDecision::Allow {
                content: Some(_), ..
            } => summary("rewrite", None),
            ModerationDecision::Allow { .. } => summary("allow", None),
        }
    }

    fn content_sha256(&self) -> Option<String> {
        Some(sha256_hex(self.input.content.as_bytes()))
    }

    fn subject(&self) -> Option<String> {
        self.input.message_id.clone()
    }

    fn context(&self) -> &PolicyContext {
        self.ctx
    }
}

/// The two file calls differ only in what they send; the chain logic is shared.
pub(crate) enum FileStage<'a> {
    Precheck(&'a FilePrecheck),
    Finish(&'a FileFinish),
}

pub(crate) struct CheckFile<'a> {
    pub(crate) ctx: &'a PolicyContext,
    pub(crate) stage: FileStage<'a>,
    name: Option<String>,
    folder: Option<String>,
}

impl<'a> CheckFile<'a> {
    pub(crate) fn new(ctx: &'a PolicyContext, stage: FileStage<'a>) -> Self {
        Self {
            ctx,
            stage,
            name: None,
            folder: None,
        }
    }

    fn original(&self) -> (&str, Option<&str>) {
        match &self.stage {
            FileStage::Precheck(input) => (&input.name, input.folder.as_deref()),
            FileStage::Finish(input) => (&input.name, input.folder.as_deref()),
        }
    }
}

fn valid_file_name(name: &str, rules: &HostRules) -> bool {
    !name.is_empty()
        && within_chars(name, rules.max_file_name_chars)
        && name.trim() == name
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

impl Call for CheckFile<'_> {
    type Verdict = FileVerdict;
    type Decision = FileVerdict;

    fn span(plugin: &str) -> Span {
        tracing::info_span!("plugin.check_file", plugin, outcome = Empty)
    }

    fn invoke(&self, loaded: &Loaded) -> Result<FileVerdict, FailureKind> {
        let (name, folder) = self.original();
        let name = self.name.as_deref().unwrap_or(name);
        let folder = self.folder.as_deref().or(folder);
        match &self.stage {
            FileStage::Precheck(input) => loaded.precheck(self.ctx, input, name, folder),
            FileStage::Finish(input) => loaded.finish(self.ctx, input, name, folder),
        }
    }

    fn outcome(verdict: &FileVerdict) -> Outcome {
        match verdict {
            FileVerdict::Accept { .. } => Outcome::Accept,
            FileVerdict::Reject(_) => Outcome::Reject,
        }
    }

    fn acceptable(&self, verdict: &FileVerdict, rules: &HostRules) -> bool {
        match verdict {
            FileVerdict::Accept { folder, name } => {
                folder.as_deref().is_none_or(|f| FOLDERS.contains(&f))
                    && name.as_deref().is_none_or(|n| valid_file_name(n, rules))
            }
            FileVerdict::Reject(_) => true,
        }
    }

    fn reason(verdict: &FileVerdict) -> Option<String> {
        match verdict {
            FileVerdict::Reject(r) => Some(code_of(r)),
            FileVerdict::Accept { .. } => None,
        }
    }

    fn absorb(&mut self, verdict: FileVerdict) -> ControlFlow<FileVerdict> {
        match verdict {
            FileVerdict::Accept { folder, name } => {
                if folder.is_some() {
                    self.folder = folder;
                }
                if name.is_some() {
                    self.name = name;
                }
                ControlFlow::Continue(())
            }
            FileVerdict::Reject(refusal) => ControlFlow::Break(FileVerdict::Reject(tidy(refusal))),
        }
    }

    fn finish(self) -> FileVerdict {
        FileVerdict::Accept {
            folder: self.folder,
            name: self.name,
        }
    }

    fn summary(decision: &FileVerdict) -> VerdictSummary {
        match decision {
            FileVerdict::Accept { .. } => summary("accept", None),
            FileVerdict::Reject(r) => summary("reject", Some(&r.code)),
        }
    }

    fn content_sha256(&self) -> Option<String> {
        match &self.stage {
            // Before the body is kept the plugins judge its head; that is what is hashed.
            FileStage::Precheck(input) => Some(sha256_hex(
                &input.head[..input.head.len().min(FilePrecheck::HEAD_LEN)],
            )),
            FileStage::Finish(input) => Some(input.sha256.clone()),
        }
    }

    fn subject(&self) -> Option<String> {
        None
    }

    fn context(&self) -> &PolicyContext {
        self.ctx
    }
}

pub(crate) struct Join<'a> {
    pub(crate) ctx: &'a PolicyContext,
    pub(crate) input: &'a JoinCheck,
}

impl Call for Join<'_> {
    type Verdict = JoinVerdict;
    type Decision = JoinVerdict;

    fn span(plugin: &str) -> Span {
        tracing::info_span!("plugin.check_join", plugin, outcome = Empty)
    }

    fn invoke(&self, loaded: &Loaded) -> Result<JoinVerdict, FailureKind> {
        loaded.check_join(self.ctx, self.input)
    }

    fn outcome(verdict: &JoinVerdict) -> Outcome {
        match verdict {
            JoinVerdict::Allow => Outcome::Allow,
            JoinVerdict::Deny(_) => Outcome::Deny,
        }
    }

    fn acceptable(&self, _verdict: &JoinVerdict, _rules: &HostRules) -> bool {
        true
    }

    fn reason(verdict: &JoinVerdict) -> Option<String> {
        match verdict {
            JoinVerdict::Deny(r) => Some(code_of(r)),
            JoinVerdict::Allow => None,
        }
    }

    fn absorb(&mut self, verdict: JoinVerdict) -> ControlFlow<JoinVerdict> {
        match verdict {
            JoinVerdict::Allow => ControlFlow::Continue(()),
            JoinVerdict::Deny(refusal) => ControlFlow::Break(JoinVerdict::Deny(tidy(refusal))),
        }
    }

    fn finish(self) -> JoinVerdict {
        JoinVerdict::Allow
    }

    fn summary(decision: &JoinVerdict) -> VerdictSummary {
        match decision {
            JoinVerdict::Allow => summary("allow", None),
            JoinVerdict::Deny(r) => summary("deny", Some(&r.code)),
        }
    }

    fn content_sha256(&self) -> Option<String> {
        None
    }

    fn subject(&self) -> Option<String> {
        Some(self.input.session_id.clone())
    }

    fn context(&self) -> &PolicyContext {
        self.ctx
    }
}

pub(crate) struct Signal<'a> {
    pub(crate) ctx: &'a PolicyContext,
    pub(crate) input: &'a SignalCheck,
    rewritten: Option<String>,
}

impl<'a> Signal<'a> {
    pub(crate) fn new(ctx: &'a PolicyContext, input: &'a SignalCheck) -> Self {
        Self {
            ctx,
            input,
            rewritten: None,
        }
    }
}

impl Call for Signal<'_> {
    type Verdict = SignalVerdict;
    type Decision = SignalVerdict;

    fn span(plugin: &str) -> Span {
        tracing::info_span!("plugin.check_signal", plugin, outcome = Empty)
    }

    fn invoke(&self, loaded: &Loaded) -> Result<SignalVerdict, FailureKind> {
        let payload = self.rewritten.as_deref().unwrap_or(&self.input.payload);
        loaded.check_signal(self.ctx, self.input, payload)
    }

    fn outcome(verdict: &SignalVerdict) -> Outcome {
        match verdict {
            SignalVerdict::Relay => Outcome::Relay,
            SignalVerdict::Rewrite { .. } => Outcome::Rewrite,
            SignalVerdict::Drop(_) => Outcome::Drop,
        }
    }

    fn acceptable(&self, verdict: &SignalVerdict, rules: &HostRules) -> bool {
        match verdict {
            SignalVerdict::Rewrite { payload } => {
                let is_json =
                    |text: &str| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
                // A JSON payload must stay JSON: the receiving peer parses it.
                !payload.is_empty()
                    && payload.len() <= rules.max_signal_bytes
                    && (!is_json(&self.input.payload) || is_json(payload))
            }
            _ => true,
        }
    }

    fn reason(verdict: &SignalVerdict) -> Option<String> {
        match verdict {
            SignalVerdict::Drop(r) => Some(code_of(r)),
            _ => None,
        }
    }

    fn absorb(&mut self, verdict: SignalVerdict) -> ControlFlow<SignalVerdict> {
        match verdict {
            SignalVerdict::Relay => {}
            SignalVerdict::Rewrite { payload } => self.rewritten = Some(payload),
            SignalVerdict::Drop(refusal) => {
                return ControlFlow::Break(SignalVerdict::Drop(tidy(refusal)));
            }
        }
        ControlFlow::Continue(())
    }

    fn finish(self) -> SignalVerdict {
        match self.rewritten {
            Some(payload) => SignalVerdict::Rewrite { payload },
            None => SignalVerdict::Relay,
        }
    }

    fn summary(decision: &SignalVerdict) -> VerdictSummary {
        match decision {
            SignalVerdict::Relay => summary("relay", None),
            SignalVerdict::Rewrite { .. } => summary("rewrite", None),
            SignalVerdict::Drop(r) => summary("drop", Some(&r.code)),
        }
    }

    fn content_sha256(&self) -> Option<String> {
        Some(sha256_hex(self.input.payload.as_bytes()))
    }

    fn subject(&self) -> Option<String> {
        Some(self.input.to.clone())
    }

    fn context(&self) -> &PolicyContext {
        self.ctx
    }
}
