//! Engine.IO v4 / Socket.IO v4 text framing, as much of it as a load generator needs.
//!
//! Every WebSocket text frame is one Engine.IO packet: a type digit, then its payload. The
//! message type (`4`) carries a Socket.IO packet: a type digit, an optional acknowledgement
//! id, then JSON. Only the default namespace is used, so no `/nsp,` part appears; binary
//! attachments (`45`, `46`) are never sent by the server for the events measured here.
//!
//! Parsing works on borrowed text and never builds a JSON tree on the hot path: a delivery
//! is recognised by the prefix of its event name, and the one field the generator needs is
//! found by its key.

/// One Engine.IO packet, Socket.IO packets inside `message` already told apart.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{...}`: the handshake (sid, ping interval, max payload).
    Open(&'a str),
    /// `1`: the server closes the transport.
    Close,
    /// `2`: the server's heartbeat, answered with [`PONG`].
    Ping,
    /// `40{...}`: namespace connection accepted; the body holds the socket id.
    Connect(&'a str),
    /// `41`: the server disconnected the socket from the namespace.
    Disconnect,
    /// `42[...]` or `42<id>[...]`: an event; `body` is the JSON array.
    Event { id: Option<u64>, body: &'a str },
    /// `43<id>[...]`: the answer to one of our events.
    Ack { id: u64, body: &'a str },
    /// `44{...}`: namespace connection refused; the body holds `message`.
    ConnectError(&'a str),
    /// Anything else (pong, noop, binary events): ignored by every scenario.
    Other,
}

/// The answer to a server ping.
pub const PONG: &str = "3";

/// Classifies one text frame.
pub fn parse(text: &str) -> Packet<'_> {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(b'0') => Packet::Open(&text[1..]),
        Some(b'1') => Packet::Close,
        Some(b'2') if bytes.len() == 1 => Packet::Ping,
        Some(b'4') => match bytes.get(1) {
            Some(b'0') => Packet::Connect(&text[2..]),
            Some(b'1') => Packet::Disconnect,
            Some(b'2') => {
                let (id, body) = split_id(&text[2..]);
                Packet::Event { id, body }
            }
            Some(b'3') => match split_id(&text[2..]) {
                (Some(id), body) => Packet::Ack { id, body },
                (None, _) => Packet::Other,
            },
            Some(b'4') => Packet::ConnectError(&text[2..]),
            _ => Packet::Other,
        },
        _ => Packet::Other,
    }
}

/// Splits the leading decimal acknowledgement id off a Socket.IO payload.
fn split_id(rest: &str) -> (Option<u64>, &str) {
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return (None, rest);
    }
    (rest[..digits].parse().ok(), &rest[digits..])
}

/// The namespace connect packet with `{"token": token}` as its auth payload.
pub fn connect(token: &str) -> String {
    let token = serde_json::Value::from(token);
    format!("40{{\"token\":{token}}}")
}

/// An event packet; `data` must already be one JSON value. With `ack`, the server answers
/// with `43<ack>[...]`.
pub fn event(ack: Option<u64>, name: &str, data: &str) -> String {
    let mut out = String::with_capacity(name.len() + data.len() + 28);
    out.push_str("42");
    if let Some(id) = ack {
        out.push_str(&id.to_string());
    }
    out.push_str("[\"");
    out.push_str(name);
    out.push_str("\",");
    out.push_str(data);
    out.push(']');
    out
}

/// True when an event body (`["name",...]`) is the event `name`.
pub fn is_event(body: &str, name: &str) -> bool {
    body.strip_prefix("[\"")
        .and_then(|rest| rest.strip_prefix(name))
        .is_some_and(|rest| rest.starts_with('"'))
}

/// The raw text of the first string field `key` in `json` (no unescaping: callers look up
/// values they generated themselves, which need none). A quote inside a JSON string is
/// always escaped, so `"key":"` cannot match inside a string value.
pub fn string_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(at) = json[from..].find(key) {
        let start = from + at;
        let end = start + key.len();
        if json[..start].ends_with('"') && json[end..].starts_with("\":\"") {
            let value = &json[end + 3..];
            return value.find('"').map(|len| &value[..len]);
        }
        from = end;
    }
    None
}

/// What an acknowledgement said.
#[derive(Debug, PartialEq, Eq)]
pub enum AckOutcome {
    Ok,
    /// `{ok: false, error: {code}}`; the code, or `?` when the error had none.
    Refused(String),
    /// Not a `{ok: ...}` object at all.
    Malformed,
}

/// Reads an acknowledgement body (`[{"ok":...}]`). The first `"ok":` is the top-level
/// one: no payload field the server sends is named `ok`, and string values cannot fake the
/// unescaped quotes.
pub fn ack_outcome(body: &str) -> AckOutcome {
    match body.find("\"ok\":") {
        Some(at) if body[at + 5..].starts_with("true") => AckOutcome::Ok,
        Some(at) if body[at + 5..].starts_with("false") => {
            // Refusals are rare and small: parsing them properly costs nothing.
            let code = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v[0]["error"]["code"].as_str().map(str::to_owned));
            AckOutcome::Refused(code.unwrap_or_else(|| "?".to_owned()))
        }
        _ => AckOutcome::Malformed,
    }
}

/// The first element of an acknowledgement body, parsed (for setup calls, off the hot path).
pub fn ack_value(body: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|mut v| v.get_mut(0).map(serde_json::Value::take))
        .unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_engine_io_packets() {
        assert_eq!(
            parse(r#"0{"sid":"a","pingInterval":25000}"#),
            Packet::Open(r#"{"sid":"a","pingInterval":25000}"#)
        );
        assert_eq!(parse("1"), Packet::Close);
        assert_eq!(parse("2"), Packet::Ping);
        // A ping probe with a payload is not a heartbeat.
        assert_eq!(parse("2probe"), Packet::Other);
        assert_eq!(parse("3"), Packet::Other);
        assert_eq!(parse(""), Packet::Other);
    }

    #[test]
    fn classifies_socket_io_packets() {
        assert_eq!(
            parse(r#"40{"sid":"xyz"}"#),
            Packet::Connect(r#"{"sid":"xyz"}"#)
        );
        assert_eq!(parse("41"), Packet::Disconnect);
        assert_eq!(
            parse(r#"44{"message":"UNAUTHORIZED"}"#),
            Packet::ConnectError(r#"{"message":"UNAUTHORIZED"}"#)
        );
        assert_eq!(
            parse(r#"42["chat:new_message",{"id":"1"}]"#),
            Packet::Event {
                id: None,
                body: r#"["chat:new_message",{"id":"1"}]"#
            }
        );
        assert_eq!(
            parse(r#"4217["ping",{}]"#),
            Packet::Event {
                id: Some(17),
                body: r#"["ping",{}]"#
            }
        );
        assert_eq!(
            parse(r#"43123[{"ok":true}]"#),
            Packet::Ack {
                id: 123,
                body: r#"[{"ok":true}]"#
            }
        );
        // An acknowledgement must name what it answers.
        assert_eq!(parse(r#"43[{"ok":true}]"#), Packet::Other);
        // Binary events are not used by the scenarios.
        assert_eq!(parse(r#"451-["x",{"_placeholder":true}]"#), Packet::Other);
    }

    #[test]
    fn encodes_events_with_and_without_ack_ids() {
        assert_eq!(
            event(None, "chat:typing", r#"{"isTyping":true}"#),
            r#"42["chat:typing",{"isTyping":true}]"#
        );
        let packet = event(Some(42), "chat:send_message", r#"{"roomId":"r"}"#);
        assert_eq!(packet, r#"4242["chat:send_message",{"roomId":"r"}]"#);
        // What we encode, we parse back to the same id and body.
        assert_eq!(
            parse(&packet),
            Packet::Event {
                id: Some(42),
                body: r#"["chat:send_message",{"roomId":"r"}]"#
            }
        );
    }

    #[test]
    fn connect_packet_escapes_the_token() {
        assert_eq!(connect("abc.def"), r#"40{"token":"abc.def"}"#);
        assert_eq!(connect("a\"b"), r#"40{"token":"a\"b"}"#);
    }

    #[test]
    fn recognises_event_names_exactly() {
        let body = r#"["chat:new_message",{"clientId":"m1.2.3"}]"#;
        assert!(is_event(body, "chat:new_message"));
        assert!(!is_event(body, "chat:new"));
        assert!(!is_event(body, "chat:new_message_x"));
        assert!(!is_event(
            r#"["chat:presence_diff",{}]"#,
            "chat:new_message"
        ));
    }

    #[test]
    fn finds_string_fields_but_not_inside_strings() {
        let json =
            r#"{"id":"m-1","content":"say \"clientId\":\"fake\" here","clientId":"m3.4.5","x":1}"#;
        assert_eq!(string_field(json, "clientId"), Some("m3.4.5"));
        assert_eq!(string_field(json, "id"), Some("m-1"));
        assert_eq!(string_field(json, "missing"), None);
        // A key that is only the tail of another key does not match.
        assert_eq!(string_field(r#"{"xclientId":"no"}"#, "clientId"), None);
        // A non-string value is not returned.
        assert_eq!(string_field(r#"{"clientId":7}"#, "clientId"), None);
    }

    #[test]
    fn reads_acknowledgements() {
        assert_eq!(
            ack_outcome(r#"[{"ok":true,"message":{"id":"1"}}]"#),
            AckOutcome::Ok
        );
        assert_eq!(
            ack_outcome(
                r#"[{"ok":false,"error":{"code":"RATE_LIMITED","message":"slow down","details":{"retryAfter":1}}}]"#
            ),
            AckOutcome::Refused("RATE_LIMITED".into())
        );
        assert_eq!(
            ack_outcome(r#"[{"ok":false}]"#),
            AckOutcome::Refused("?".into())
        );
        assert_eq!(ack_outcome(r#"["nothing"]"#), AckOutcome::Malformed);
        assert_eq!(
            ack_value(r#"[{"ok":true,"roomId":"r"}]"#)["roomId"],
            serde_json::json!("r")
        );
        assert_eq!(ack_value("not json"), serde_json::Value::Null);
    }
}
