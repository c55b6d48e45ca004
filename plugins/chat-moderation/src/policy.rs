//! The chat moderation rules, free of WebAssembly bindings.
//!
//! Three checks, in this order: the sender's message rate when a rate limit is configured
//! (through a counter the caller provides, backed by the host's key-value store), word
//! lists, and links. Word lists match
//! whole words, ignoring case and diacritics and seeing through common disguises: l33t
//! spelling (`sh1t`, `@ss`), look-alike Cyrillic and Greek letters, separators between
//! letters (`f.u.c.k`, `f u c k`), stretched letters (`fuuuck`), starred letters (`f*ck`)
//! and invisible characters. A word ending in `*` also matches every word it begins.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::Deserialize;

/// The sender's role where the message is posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Student,
    Instructor,
    Admin,
}

/// What a word list does with a message that contains one of its words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Refuse the message (the most severe: checked first).
    Reject,
    /// Store the message, flagged for the instructors.
    Flag,
    /// Replace the word's characters with `*`.
    Mask,
}

/// One configured list of words.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WordList {
    /// A label for logs and flag reasons.
    #[serde(default)]
    pub name: String,
    pub action: Action,
    pub words: Vec<String>,
    /// The refusal code for `reject` lists; `banned_word` by default.
    #[serde(default)]
    pub code: Option<String>,
    /// The sentence shown to the sender (`reject`) or the instructors (`flag`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// What happens to a message linking to a domain that is not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkAction {
    Allow,
    Flag,
    Reject,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkPolicy {
    pub action: LinkAction,
    /// Domains always allowed, subdomains included.
    pub allowed_domains: Vec<String>,
    /// Roles whose links are never checked.
    pub exempt_roles: Vec<Role>,
}

impl Default for LinkPolicy {
    fn default() -> Self {
        Self {
            action: LinkAction::Flag,
            allowed_domains: Vec::new(),
            exempt_roles: vec![Role::Instructor, Role::Admin],
        }
    }
}

/// A per-user message rate, on top of the server's own. Off unless configured: the server
/// already limits every sender's chat rate, and a second default limit would only refuse
/// messages the operator never asked to refuse. Configured (`rate_limit = {}` is enough),
/// the fields below default to 20 messages per 10 s.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    /// Messages allowed per window; 0 turns the limit off.
    pub messages: u64,
    pub window_seconds: u64,
    pub exempt_roles: Vec<Role>,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            messages: 20,
            window_seconds: 10,
            exempt_roles: Vec::new(),
        }
    }
}

/// The plugin's configuration table.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub lists: Vec<WordList>,
    pub links: LinkPolicy,
    /// `None` (the default): no limit of the plugin's own.
    pub rate_limit: Option<RateLimit>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            lists: vec![WordList {
                name: "profanity".into(),
                action: Action::Mask,
                words: [
                    "fuck*",
                    "motherfuck*",
                    "shit",
                    "shitty",
                    "bullshit",
                    "bitch*",
                    "asshole*",
                    "cunt*",
                    "bastard*",
                    "dickhead*",
                ]
                .iter()
                .map(|w| (*w).to_owned())
                .collect(),
                code: None,
                reason: None,
            }],
            links: LinkPolicy::default(),
            rate_limit: None,
        }
    }
}

/// One message to judge.
pub struct Input<'a> {
    pub content: &'a str,
    pub actor_id: &'a str,
    pub role: Role,
    pub at_unix_ms: u64,
}

/// The plugin's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Reject { code: String, reason: String },
    Rewrite(String),
    Flag(String),
}

struct List {
    action: Action,
    code: String,
    reason: String,
}

/// A configured word in canonical form.
struct Entry {
    list: usize,
    prefix: bool,
    /// Canonical letters, as written in the list.
    text: String,
    /// Run-length form: a text word matches when it has the same letters in the same order,
    /// each repeated at least as often as here ("fuuck" matches "fuck", "as" is not "ass").
    runs: Vec<(char, u32)>,
    /// The letters with each run once: what a candidate's collapsed form is compared with.
    collapsed: String,
}

/// FNV-1a: the words are the operator's, not attacker-chosen, so a fast hash with a fixed
/// seed is safe. (The standard hasher would also seed itself from WASI randomness, an
/// import plugins do not get.)
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// Compiled rules, built once per instance from the configuration.
pub struct Moderator {
    lists: Vec<List>,
    entries: Vec<Entry>,
    /// Entries by their collapsed letters, most severe list first.
    exact: FastMap<String, Vec<usize>>,
    prefixes: Vec<usize>,
    min_len: usize,
    /// The first two distinct letters of every entry, for lowercase ASCII pairs: most words
    /// of a message are dismissed by this test alone. Entries starting otherwise set
    /// `unfiltered`, which turns the test off.
    first_pairs: [u32; 26],
    unfiltered: bool,
    links: LinkPolicy,
    rate: Option<RateLimit>,
}

impl Moderator {
    pub fn new(config: &Config) -> Self {
        let mut lists = Vec::new();
        let mut entries = Vec::new();
        for list in &config.lists {
            let index = lists.len();
            let default_reason = match list.action {
                Action::Reject => {
                    "This message contains a word that is not allowed here.".to_owned()
                }
                _ if list.name.is_empty() => "contains a listed word".to_owned(),
                _ => format!("contains a word from the list \"{}\"", list.name),
            };
            lists.push(List {
                action: list.action,
                code: list
                    .code
                    .clone()
                    .unwrap_or_else(|| "banned_word".to_owned()),
                reason: list.reason.clone().unwrap_or(default_reason),
            });
            for word in &list.words {
                let (word, prefix) = match word.strip_suffix('*') {
                    Some(stem) => (stem, true),
                    None => (word.as_str(), false),
                };
                let text: String = canonical_word(word);
                if text.is_empty() {
                    continue;
                }
                let runs = runs_of(&text);
                let collapsed = collapsed(&runs);
                entries.push(Entry {
                    list: index,
                    prefix,
                    text,
                    runs,
                    collapsed,
                });
            }
        }
        // Most severe first, so the first match found is the one that decides.
        entries.sort_by_key(|e| lists[e.list].action);
        let mut exact: FastMap<String, Vec<usize>> = FastMap::default();
        let mut prefixes = Vec::new();
        let mut first_pairs = [0u32; 26];
        let mut unfiltered = false;
        for (i, entry) in entries.iter().enumerate() {
            match entry.collapsed.as_bytes() {
                [a @ b'a'..=b'z', b @ b'a'..=b'z', ..] => {
                    first_pairs[usize::from(a - b'a')] |= 1 << (b - b'a');
                }
                _ => unfiltered = true,
            }
            if entry.prefix {
                prefixes.push(i);
            } else {
                exact.entry(entry.collapsed.clone()).or_default().push(i);
            }
        }
        let min_len = entries
            .iter()
            .map(|e| e.runs.len())
            .min()
            .unwrap_or(usize::MAX);
        let mut links = config.links.clone();
        for domain in &mut links.allowed_domains {
            *domain = domain
                .trim()
                .trim_start_matches("*.")
                .trim_matches('.')
                .to_ascii_lowercase();
        }
        Self {
            lists,
            entries,
            exact,
            prefixes,
            min_len,
            first_pairs,
            unfiltered,
            links,
            rate: config.rate_limit.clone(),
        }
    }

    /// Judges a message. `count(key, ttl_ms)` increments a counter kept by the host and
    /// returns its new value, or `None` when the store is unavailable (the limit is then
    /// not applied: refusing every message because a counter is down would be worse).
    pub fn moderate(
        &self,
        input: &Input<'_>,
        count: &mut dyn FnMut(&str, u64) -> Option<i64>,
    ) -> Decision {
        if let Some(refused) = self.check_rate(input, count) {
            return refused;
        }

        let mut masks: Vec<(usize, usize)> = Vec::new();
        let mut flag: Option<usize> = None;
        if !self.entries.is_empty() {
            let mut found = None;
            let mut key = String::new();
            scan_words(input.content, |start, end, candidate, wild| {
                let Some(entry) = self.lookup(candidate, wild, &mut key) else {
                    return true;
                };
                let list = self.entries[entry].list;
                match self.lists[list].action {
                    Action::Reject => {
                        found = Some(list);
                        return false;
                    }
                    Action::Flag => {
                        flag.get_or_insert(list);
                    }
                    Action::Mask => masks.push((start, end)),
                }
                true
            });
            if let Some(list) = found {
                let list = &self.lists[list];
                return Decision::Reject {
                    code: list.code.clone(),
                    reason: list.reason.clone(),
                };
            }
        }

        let link = if self.links.action != LinkAction::Allow
            && !self.links.exempt_roles.contains(&input.role)
        {
            self.first_forbidden_link(input.content)
        } else {
            None
        };
        if let Some(host) = &link
            && self.links.action == LinkAction::Reject
        {
            return Decision::Reject {
                code: "link_not_allowed".to_owned(),
                reason: format!("Links to {host} are not allowed here."),
            };
        }

        // One verdict per plugin: a rewrite keeps offending words out of everyone's sight,
        // which matters more than the flag it would also deserve.
        if !masks.is_empty() {
            return Decision::Rewrite(mask(input.content, &masks));
        }
        if let Some(list) = flag {
            return Decision::Flag(self.lists[list].reason.clone());
        }
        if let Some(host) = link {
            return Decision::Flag(format!("links to {host}"));
        }
        Decision::Allow
    }

    fn check_rate(
        &self,
        input: &Input<'_>,
        count: &mut dyn FnMut(&str, u64) -> Option<i64>,
    ) -> Option<Decision> {
        let rate = self.rate.as_ref()?;
        if rate.messages == 0 || rate.exempt_roles.contains(&input.role) {
            return None;
        }
        let window_ms = rate.window_seconds.max(1) * 1000;
        let window = input.at_unix_ms / window_ms;
        let remaining = window_ms - input.at_unix_ms % window_ms;
        // Built by hand: `format!` costs more than everything else here in a wasm guest.
        let mut key = String::with_capacity(input.actor_id.len() + 26);
        key.push_str("rate:");
        key.push_str(input.actor_id);
        key.push(':');
        push_decimal(&mut key, window);
        let sent = count(&key, remaining)?;
        (sent > i64::try_from(rate.messages).unwrap_or(i64::MAX)).then(|| Decision::Reject {
            code: "rate_limited".to_owned(),
            reason: "You are sending messages too quickly; wait a few seconds.".to_owned(),
        })
    }

    /// The entry `candidate` matches, if any; `key` is scratch space reused across calls.
    fn lookup(&self, candidate: &str, wild: bool, key: &mut String) -> Option<usize> {
        if wild {
            return self
                .entries
                .iter()
                .position(|e| wildcard_matches(candidate, &e.text, e.prefix));
        }
        if !self.unfiltered {
            let bytes = candidate.as_bytes();
            let first = *bytes.first()?;
            let second = bytes.iter().copied().find(|&b| b != first);
            if let Some(second) = second
                && first.is_ascii_lowercase()
                && second.is_ascii_lowercase()
                && self.first_pairs[usize::from(first - b'a')] & (1 << (second - b'a')) == 0
            {
                return None;
            }
        }
        key.clear();
        let mut runs = 0;
        for c in candidate.chars() {
            if !key.ends_with(c) {
                key.push(c);
                runs += 1;
            }
        }
        if runs < self.min_len {
            return None;
        }
        if let Some(ids) = self.exact.get(key.as_str())
            && let Some(&id) = ids
                .iter()
                .find(|&&id| runs_match(candidate, &self.entries[id].runs, false))
        {
            return Some(id);
        }
        self.prefixes.iter().copied().find(|&id| {
            let entry = &self.entries[id];
            key.starts_with(entry.collapsed.as_str()) && runs_match(candidate, &entry.runs, true)
        })
    }

    fn first_forbidden_link(&self, content: &str) -> Option<String> {
        // Every link has a dot: look at the whitespace-delimited chunks around dots only.
        let bytes = content.as_bytes();
        let mut from = 0;
        while let Some(dot) = bytes[from..]
            .iter()
            .position(|&b| b == b'.')
            .map(|p| p + from)
        {
            let start = bytes[..dot]
                .iter()
                .rposition(u8::is_ascii_whitespace)
                .map_or(0, |p| p + 1);
            let end = bytes[dot..]
                .iter()
                .position(u8::is_ascii_whitespace)
                .map_or(bytes.len(), |p| p + dot);
            from = end;
            // Chunks are cut at ASCII whitespace; other spaces fall to `link_host`'s checks.
            let Some(host) = content.get(start..end).and_then(link_host) else {
                continue;
            };
            let allowed = self.links.allowed_domains.iter().any(|d| {
                host == *d
                    || (host.len() > d.len()
                        && host.ends_with(d.as_str())
                        && host.as_bytes()[host.len() - d.len() - 1] == b'.')
            });
            if !allowed {
                return Some(host);
            }
        }
        None
    }
}

fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// The canonical form of a configured word: letters folded as in messages, anything else
/// dropped.
fn canonical_word(word: &str) -> String {
    let mut out = String::new();
    for (i, c) in word.char_indices() {
        let rest = &word[i + c.len_utf8()..];
        if let Some(folded) = fold(c, !out.is_empty(), || next_is_alnum(rest))
            && folded != '*'
        {
            out.push(folded);
        }
    }
    out
}

fn runs_of(text: &str) -> Vec<(char, u32)> {
    let mut runs: Vec<(char, u32)> = Vec::new();
    for c in text.chars() {
        match runs.last_mut() {
            Some((last, n)) if *last == c => *n += 1,
            _ => runs.push((c, 1)),
        }
    }
    runs
}

fn collapsed(runs: &[(char, u32)]) -> String {
    runs.iter().map(|(c, _)| *c).collect()
}

/// Whether `text` has the letters of `runs`, each at least as often; with `prefix`, `text`
/// may go on after them.
fn runs_match(text: &str, runs: &[(char, u32)], prefix: bool) -> bool {
    let mut chars = text.chars().peekable();
    for &(c, n) in runs {
        let mut seen = 0;
        while chars.peek() == Some(&c) {
            chars.next();
            seen += 1;
        }
        if seen < n {
            return false;
        }
    }
    prefix || chars.next().is_none()
}

/// Compares a candidate holding `*` (any one letter) with a word, letter by letter.
fn wildcard_matches(candidate: &str, word: &str, prefix: bool) -> bool {
    let mut cand = candidate.chars();
    for w in word.chars() {
        match cand.next() {
            Some(c) if c == w || c == '*' => {}
            _ => return false,
        }
    }
    prefix || cand.next().is_none()
}

/// Characters that change nothing visible and are used to split words invisibly.
fn ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
    )
}

/// Separators that still hold the letters of one word together (`f.u.c.k`, `fu-ck`).
fn tight_separator(c: char) -> bool {
    matches!(
        c,
        '.' | '-' | '_' | '~' | '^' | '\'' | '`' | ':' | '/' | '\\' | '=' | '#' | '·' | '•'
    )
}

/// How an ASCII character reads inside a word.
#[derive(Clone, Copy)]
enum Ascii {
    /// A letter or digit, standing for this canonical letter (`4` reads `a`).
    Letter(u8),
    /// A symbol standing for a letter only when a letter or digit follows (`sh!t`, `@ss`,
    /// but not `shit!`).
    Symbol(u8),
    /// `*`, standing for any letter inside a word (`f*ck`), never around one (`*bold*`).
    Star,
    /// A separator.
    Other,
}

/// The reading of every ASCII character, computed at compile time: most messages are
/// mostly ASCII, and a table lookup is the cheapest way through them.
const ASCII: [Ascii; 128] = {
    let mut table = [Ascii::Other; 128];
    let mut b = 0;
    while b < 128 {
        let byte = b as u8;
        table[b] = match byte {
            b'a'..=b'z' => Ascii::Letter(byte),
            b'A'..=b'Z' => Ascii::Letter(byte + 32),
            b'0' => Ascii::Letter(b'o'),
            b'1' => Ascii::Letter(b'i'),
            b'3' => Ascii::Letter(b'e'),
            b'4' => Ascii::Letter(b'a'),
            b'5' => Ascii::Letter(b's'),
            b'7' => Ascii::Letter(b't'),
            b'8' => Ascii::Letter(b'b'),
            b'9' => Ascii::Letter(b'g'),
            b'2' | b'6' => Ascii::Letter(byte),
            b'@' => Ascii::Symbol(b'a'),
            b'$' => Ascii::Symbol(b's'),
            b'!' | b'|' => Ascii::Symbol(b'i'),
            b'+' => Ascii::Symbol(b't'),
            b'*' => Ascii::Star,
            _ => Ascii::Other,
        };
        b += 1;
    }
    table
};

/// The canonical letter for `c`, or `None` when `c` separates words. `in_word` tells
/// whether a word is under way, `next_is_alnum` whether a letter or digit follows; it is
/// only asked about symbols.
fn fold(c: char, in_word: bool, next_is_alnum: impl FnOnce() -> bool) -> Option<char> {
    if c.is_ascii() {
        return match ASCII[c as usize] {
            Ascii::Letter(l) => Some(char::from(l)),
            Ascii::Symbol(l) => next_is_alnum().then_some(char::from(l)),
            Ascii::Star => (in_word && next_is_alnum()).then_some('*'),
            Ascii::Other => None,
        };
    }
    if c == '€' {
        return next_is_alnum().then_some('e');
    }
    if !c.is_alphanumeric() {
        return None;
    }
    let lower = c.to_lowercase().next().unwrap_or(c);
    Some(match lower {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' | 'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' | 'с' => 'c',
        'ď' | 'đ' | 'ԁ' => 'd',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' | 'е' | 'ё' | 'ε' => 'e',
        'ğ' | 'ġ' | 'ģ' => 'g',
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' | 'і' | 'ι' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'ł' | 'ľ' | 'ĺ' => 'l',
        'ñ' | 'ń' | 'ņ' | 'ň' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' | 'о' | 'ο' => 'o',
        'р' | 'ρ' => 'p',
        'ŕ' | 'ř' => 'r',
        'ś' | 'ŝ' | 'ş' | 'š' | 'ѕ' | 'ß' => 's',
        'ť' | 'ţ' | 'τ' => 't',
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' | 'υ' => 'u',
        'ν' => 'v',
        'х' | 'χ' => 'x',
        'ý' | 'ÿ' | 'ŷ' | 'у' => 'y',
        'ź' | 'ż' | 'ž' => 'z',
        other => other,
    })
}

/// Whether the first visible character of `rest` is a letter or digit.
fn next_is_alnum(rest: &str) -> bool {
    rest.chars()
        .find(|c| !ignorable(*c))
        .is_some_and(char::is_alphanumeric)
}

/// A word of the message: byte span and canonical letters.
struct Token {
    start: usize,
    end: usize,
    text: std::ops::Range<usize>,
    wild: bool,
    /// A single letter, as in `f u c k`.
    single: bool,
}

/// Calls `visit(start, end, canonical, has_wildcard)` for every word of `content` and for
/// every run of words held together by separators; stops when `visit` returns false.
fn scan_words(content: &str, mut visit: impl FnMut(usize, usize, &str, bool) -> bool) {
    let bytes = content.as_bytes();
    let mut canon = String::with_capacity(content.len());
    let mut tokens: Vec<Token> = Vec::with_capacity(content.len() / 4 + 1);
    // The word under way, if `in_word`: where it started in `content` and in `canon`.
    let mut in_word = false;
    let mut start = 0;
    let mut text_start = 0;
    let mut end = 0;
    let mut wild = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        // Runs of plain letters and digits are most of any message: take them in a tight
        // loop, without the general case's lookahead and branching.
        if let Ascii::Letter(l) = ASCII[usize::from(b & 0x7f)]
            && b.is_ascii()
        {
            if !in_word {
                in_word = true;
                start = i;
                text_start = canon.len();
                wild = false;
            }
            canon.push(char::from(l));
            i += 1;
            while let Some(&b) = bytes.get(i)
                && let Ascii::Letter(l) = ASCII[usize::from(b & 0x7f)]
                && b.is_ascii()
            {
                canon.push(char::from(l));
                i += 1;
            }
            end = i;
            continue;
        }
        let (folded, len) = if b.is_ascii() {
            let folded = match ASCII[usize::from(b)] {
                Ascii::Letter(l) => Some(char::from(l)),
                Ascii::Other => None,
                _ => fold(char::from(b), in_word, || next_is_alnum(&content[i + 1..])),
            };
            (folded, 1)
        } else {
            let c = content[i..].chars().next().unwrap_or(' ');
            let len = c.len_utf8();
            if ignorable(c) {
                i += len;
                continue;
            }
            (fold(c, in_word, || next_is_alnum(&content[i + len..])), len)
        };
        match folded {
            Some(f) => {
                if !in_word {
                    in_word = true;
                    start = i;
                    text_start = canon.len();
                    wild = false;
                }
                canon.push(f);
                wild |= f == '*';
                end = i + len;
            }
            None if in_word => {
                in_word = false;
                tokens.push(Token {
                    start,
                    end,
                    text: text_start..canon.len(),
                    wild,
                    single: false,
                });
            }
            None => {}
        }
        i += len;
    }
    if in_word {
        tokens.push(Token {
            start,
            end,
            text: text_start..canon.len(),
            wild,
            single: false,
        });
    }
    for token in &mut tokens {
        token.single = canon[token.text.clone()].chars().nth(1).is_none();
    }

    for token in &tokens {
        if !visit(
            token.start,
            token.end,
            &canon[token.text.clone()],
            token.wild,
        ) {
            return;
        }
    }

    // Words split by separators: `f.u.c.k`, `fu-ck`, `f u c k`.
    let mut joined = String::new();
    let mut run_start = 0;
    for i in 1..=tokens.len() {
        let tight = i < tokens.len() && {
            let gap = &content[tokens[i - 1].end..tokens[i].start];
            let single_letters = tokens[i - 1].single && tokens[i].single;
            match gap.as_bytes() {
                [b] => {
                    tight_separator(char::from(*b))
                        || (single_letters && (*b == b' ' || *b == b'\t'))
                }
                _ => {
                    let mut visible = gap.chars().filter(|c| !ignorable(*c));
                    match (visible.next(), visible.next()) {
                        (Some(c), None) if tight_separator(c) => true,
                        _ => {
                            single_letters
                                && gap.len() <= 3
                                && gap.chars().all(|c| c == ' ' || c == '\t' || ignorable(c))
                        }
                    }
                }
            }
        };
        if tight {
            continue;
        }
        if i - run_start >= 2 {
            joined.clear();
            let mut wild = false;
            for token in &tokens[run_start..i] {
                joined.push_str(&canon[token.text.clone()]);
                wild |= token.wild;
            }
            if !visit(tokens[run_start].start, tokens[i - 1].end, &joined, wild) {
                return;
            }
        }
        run_start = i;
    }
}

/// `content` with every non-space character inside the spans replaced by `*`.
fn mask(content: &str, spans: &[(usize, usize)]) -> String {
    let mut spans = spans.to_vec();
    spans.sort_unstable();
    let mut out = String::with_capacity(content.len());
    let mut copied = 0;
    for (start, end) in spans {
        let start = start.max(copied);
        if start >= end {
            continue;
        }
        out.push_str(&content[copied..start]);
        for c in content[start..end].chars() {
            out.push(if c.is_whitespace() { c } else { '*' });
        }
        copied = end;
    }
    out.push_str(&content[copied..]);
    out
}

/// Top-level domains that make `name.tld` without a scheme count as a link.
const TLDS: &[&str] = &[
    "ai", "app", "art", "au", "biz", "blog", "br", "ca", "cc", "ch", "click", "club", "cn", "co",
    "com", "de", "dev", "edu", "es", "eu", "fr", "gg", "gov", "in", "info", "io", "it", "jp",
    "link", "live", "ly", "me", "net", "nl", "online", "org", "pl", "pro", "ru", "se", "shop",
    "site", "store", "to", "top", "tv", "uk", "us", "xyz",
];

/// The host a whitespace-free chunk of text links to, lowercase, if it is a link.
fn link_host(chunk: &str) -> Option<String> {
    let chunk = chunk.trim_matches(|c: char| "\"'()[]<>{},.;:!?*_`".contains(c));
    if chunk.len() < 4 {
        return None;
    }
    let (rest, explicit) = match chunk.as_bytes().windows(3).position(|w| w == b"://") {
        Some(at) => {
            let scheme = &chunk[..at];
            if !["http", "https", "ftp", "ws", "wss"]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(scheme))
            {
                return None;
            }
            (&chunk[at + 3..], true)
        }
        None => (
            chunk,
            chunk.len() > 4 && chunk[..4].eq_ignore_ascii_case("www."),
        ),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = host
        .split(':')
        .next()
        .unwrap_or_default()
        .trim_end_matches('.');
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return None;
    }
    if !explicit {
        if authority.contains('@') || authority.contains(':') {
            return None;
        }
        let tld = host.rsplit('.').next().unwrap_or_default();
        if !host.contains('.') || !TLDS.iter().any(|t| t.eq_ignore_ascii_case(tld)) {
            return None;
        }
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter like the host's `kv.incr`, remembering which keys it was asked about.
    #[derive(Default)]
    struct Counter {
        counts: std::collections::BTreeMap<String, i64>,
    }

    impl Counter {
        fn incr(&mut self, key: &str, _ttl_ms: u64) -> Option<i64> {
            let n = self.counts.entry(key.to_owned()).or_insert(0);
            *n += 1;
            Some(*n)
        }
    }

    /// Sends `n` clean messages as one student within one second; the decisions.
    fn send_burst(moderator: &Moderator, counter: &mut Counter, n: usize) -> Vec<Decision> {
        (0..n)
            .map(|i| {
                let input = Input {
                    content: "a clean message",
                    actor_id: "student-1",
                    role: Role::Student,
                    at_unix_ms: 1_700_000_000_000 + i as u64,
                };
                moderator.moderate(&input, &mut |key, ttl| counter.incr(key, ttl))
            })
            .collect()
    }

    fn rate_limited(decision: &Decision) -> bool {
        matches!(decision, Decision::Reject { code, .. } if code == "rate_limited")
    }

    #[test]
    fn by_default_the_plugin_limits_no_rate_and_counts_nothing() {
        let moderator = Moderator::new(&Config::default());
        let mut counter = Counter::default();
        let decisions = send_burst(&moderator, &mut counter, 100);
        assert!(
            decisions.iter().all(|d| *d == Decision::Allow),
            "{decisions:?}"
        );
        assert!(
            counter.counts.is_empty(),
            "the store was asked: {:?}",
            counter.counts
        );
    }

    #[test]
    fn a_configured_rate_limit_refuses_past_its_count_with_rate_limited() {
        let config = Config {
            rate_limit: Some(RateLimit {
                messages: 3,
                ..RateLimit::default()
            }),
            ..Config::default()
        };
        let moderator = Moderator::new(&config);
        let decisions = send_burst(&moderator, &mut Counter::default(), 5);
        assert_eq!(
            decisions[..3],
            [Decision::Allow, Decision::Allow, Decision::Allow]
        );
        assert!(decisions[3..].iter().all(rate_limited), "{decisions:?}");
    }

    #[test]
    fn an_empty_rate_limit_table_turns_on_twenty_messages_per_ten_seconds() {
        let config: Config = serde_json::from_str(r#"{ "rate_limit": {} }"#).unwrap();
        let rate = config.rate_limit.as_ref().expect("configured");
        assert_eq!((rate.messages, rate.window_seconds), (20, 10));
        let decisions = send_burst(&Moderator::new(&config), &mut Counter::default(), 21);
        assert!(decisions[..20].iter().all(|d| *d == Decision::Allow));
        assert!(rate_limited(&decisions[20]));

        let off: Config = serde_json::from_str(r#"{ "rate_limit": { "messages": 0 } }"#).unwrap();
        let decisions = send_burst(&Moderator::new(&off), &mut Counter::default(), 30);
        assert!(decisions.iter().all(|d| *d == Decision::Allow));
    }
}
