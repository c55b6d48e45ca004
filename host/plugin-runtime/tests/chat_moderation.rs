//! The default chat moderation plugin, through the real runtime.

mod common;

use common::{builtin, builtin_with, ctx, ctx_at, engine};
use lyceum_plugin_runtime::{
    MessageEvent, ModerationDecision, ModerationInput, Refusal, Role, Slot,
};
use serde_json::json;

#[derive(Debug)]
enum Expect {
    Allow,
    Masked(&'static str),
    Flagged,
    Rejected(&'static str),
}

fn check(engine: &lyceum_plugin_runtime::PolicyEngine, role: Role, text: &str, expect: &Expect) {
    let decision = engine
        .moderate_blocking(&ctx(role), &ModerationInput::send("room-1", text))
        .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    match (expect, &decision) {
        (
            Expect::Allow,
            ModerationDecision::Allow {
                content: None,
                flags,
            },
        ) if flags.is_empty() => {}
        (
            Expect::Masked(want),
            ModerationDecision::Allow {
                content: Some(got),
                flags,
            },
        ) if flags.is_empty() => {
            assert_eq!(got, want, "masking {text:?}");
        }
        (
            Expect::Flagged,
            ModerationDecision::Allow {
                content: None,
                flags,
            },
        ) if flags.len() == 1 => {}
        (Expect::Rejected(code), ModerationDecision::Reject(Refusal { code: got, reason })) => {
            assert_eq!(got, code, "code for {text:?}");
            assert!(!reason.is_empty());
        }
        _ => panic!("{text:?} as {role:?}: expected {expect:?}, got {decision:?}"),
    }
}

#[test]
fn default_word_list_sees_through_disguises() {
    let engine = engine(Slot::Chat, vec![builtin(Slot::Chat)]);
    let cases: &[(&str, Expect)] = &[
        ("hello everyone, see you at 10", Expect::Allow),
        ("this is shit", Expect::Masked("this is ****")),
        ("SHIT happens", Expect::Masked("**** happens")),
        ("well sh1t.", Expect::Masked("well ****.")),
        ("$hit!", Expect::Masked("****!")),
        ("f.u.c.k this", Expect::Masked("******* this")),
        ("f u c k", Expect::Masked("* * * *")),
        ("fuuuuuck", Expect::Masked("********")),
        ("what the f*ck", Expect::Masked("what the ****")),
        ("*fuck*", Expect::Masked("******")),
        ("fucking great", Expect::Masked("******* great")),
        ("sh\u{200B}it", Expect::Masked("*****")),
        ("sh\u{0456}t", Expect::Masked("****")),
        ("Fück", Expect::Masked("****")),
        // Whole words only: these contain listed words but are not them.
        ("shitake is a mushroom", Expect::Allow),
        ("Scunthorpe United", Expect::Allow),
        ("a classic assessment", Expect::Allow),
        ("ship it", Expect::Allow),
    ];
    for (text, expect) in cases {
        check(&engine, Role::Student, text, expect);
    }
}

#[test]
fn reject_and_flag_lists_and_repetition_rules() {
    let config = json!({
        "lists": [
            { "name": "banned", "action": "reject", "words": ["ass", "idiot"] },
            { "name": "spam", "action": "reject", "words": ["casino*"], "code": "spam", "reason": "No advertising." },
            { "name": "watch", "action": "flag", "words": ["cheat*"] },
            { "name": "mild", "action": "mask", "words": ["darn"] },
        ],
        "rate_limit": { "messages": 0 },
    });
    let engine = engine(Slot::Chat, vec![builtin_with(Slot::Chat, config)]);
    let cases: &[(&str, Expect)] = &[
        ("you are an idiot", Expect::Rejected("banned_word")),
        ("1d10t", Expect::Rejected("banned_word")),
        ("i.d.i.o.t", Expect::Rejected("banned_word")),
        // "as" has one s: stretching may add letters, never remove them.
        ("as a student", Expect::Allow),
        ("asssss", Expect::Rejected("banned_word")),
        ("best casinos online", Expect::Rejected("spam")),
        ("can we cheat on the quiz", Expect::Flagged),
        ("darn it", Expect::Masked("**** it")),
        // A reject wins over a mask in the same message.
        ("darn idiot", Expect::Rejected("banned_word")),
    ];
    for (text, expect) in cases {
        check(&engine, Role::Student, text, expect);
    }
}

#[test]
fn links_follow_the_link_policy() {
    let flagging = engine(
        Slot::Chat,
        vec![builtin_with(
            Slot::Chat,
            json!({ "links": { "action": "flag", "allowed_domains": ["example.edu"] } }),
        )],
    );
    let cases: &[(Role, &str, Expect)] = &[
        (
            Role::Student,
            "see https://evil.example.com/x",
            Expect::Flagged,
        ),
        (Role::Student, "visit spam.xyz now", Expect::Flagged),
        (
            Role::Student,
            "notes at https://www.example.edu/a?b=c",
            Expect::Allow,
        ),
        (Role::Student, "(docs.example.edu/syllabus)", Expect::Allow),
        (
            Role::Student,
            "e.g. this, i.e. that, version 1.5",
            Expect::Allow,
        ),
        (Role::Student, "mail me at bob@example.com", Expect::Allow),
        (
            Role::Instructor,
            "read https://evil.example.com",
            Expect::Allow,
        ),
    ];
    for (role, text, expect) in cases {
        check(&flagging, *role, text, expect);
    }

    let rejecting = engine(
        Slot::Chat,
        vec![builtin_with(
            Slot::Chat,
            json!({ "links": { "action": "reject", "exempt_roles": [] } }),
        )],
    );
    check(
        &rejecting,
        Role::Instructor,
        "go to www.phish.io",
        &Expect::Rejected("link_not_allowed"),
    );
    check(
        &rejecting,
        Role::Student,
        "nothing to see here",
        &Expect::Allow,
    );
}

#[test]
fn rate_limit_counts_per_user_and_window_in_the_host_store() {
    let engine = engine(
        Slot::Chat,
        vec![builtin_with(
            Slot::Chat,
            json!({ "rate_limit": { "messages": 3, "window_seconds": 10 } }),
        )],
    );
    // The fixed instant of `ctx` starts a 10 s window.
    let window_start: u64 = 1_700_000_000_000;
    assert_eq!(window_start % 10_000, 0);
    let send = |actor: &str, at: u64| {
        engine
            .moderate_blocking(
                &ctx_at(Role::Student, actor, at),
                &ModerationInput::send("room-1", "hi"),
            )
            .unwrap()
    };
    for i in 0..3 {
        assert_eq!(
            send("alice", window_start + i * 1000),
            ModerationDecision::allow(),
            "message {i}"
        );
    }
    match send("alice", window_start + 3500) {
        ModerationDecision::Reject(r) => assert_eq!(r.code, "rate_limited"),
        other => panic!("the fourth message in the window passed: {other:?}"),
    }
    assert_eq!(
        send("bob", window_start + 3600),
        ModerationDecision::allow(),
        "another user is not limited"
    );
    assert_eq!(
        send("alice", window_start + 10_000),
        ModerationDecision::allow(),
        "a new window starts over"
    );
    // The counter lives in the host store, under the plugin's namespace.
    let counted = engine
        .kv_store()
        .get(
            "chat-moderation",
            &format!("rate:alice:{}", window_start / 10_000),
        )
        .unwrap();
    assert_eq!(counted.as_deref(), Some("4"));
}

#[test]
fn edits_are_moderated_too() {
    let engine = engine(Slot::Chat, vec![builtin(Slot::Chat)]);
    let mut input = ModerationInput::send("room-1", "edited to shit");
    input.event = MessageEvent::Edit;
    input.message_id = Some("message-1".into());
    let decision = engine
        .moderate_blocking(&ctx(Role::Student), &input)
        .unwrap();
    assert_eq!(
        decision,
        ModerationDecision::Allow {
            content: Some("edited to ****".into()),
            flags: vec![]
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_callers_get_the_same_answers_from_spawned_tasks() {
    let engine = engine(Slot::Chat, vec![builtin(Slot::Chat)]);
    // `tokio::spawn` needs the engine and its futures to be `Send + 'static`, as they are
    // in the server's handlers.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let text = format!("message {i}: oh shit");
                engine
                    .moderate(&ctx(Role::Student), &ModerationInput::send("room-1", text))
                    .await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let decision = task.await.unwrap().unwrap();
        assert_eq!(
            decision,
            ModerationDecision::Allow {
                content: Some(format!("message {i}: oh ****")),
                flags: vec![]
            }
        );
    }
}

#[test]
fn concurrent_callers_share_the_instance_pool() {
    let engine = engine(
        Slot::Chat,
        vec![builtin_with(
            Slot::Chat,
            json!({ "rate_limit": { "messages": 0 } }),
        )],
    );
    std::thread::scope(|scope| {
        for t in 0..4 {
            let engine = engine.clone();
            scope.spawn(move || {
                for i in 0..200 {
                    let text = if i % 2 == 0 { "clean text" } else { "bullshit" };
                    let decision = engine
                        .moderate_blocking(
                            &ctx(Role::Student),
                            &ModerationInput::send("room", text),
                        )
                        .unwrap();
                    let masked = matches!(
                        decision,
                        ModerationDecision::Allow {
                            content: Some(_),
                            ..
                        }
                    );
                    assert_eq!(masked, i % 2 == 1, "thread {t} call {i}");
                }
            });
        }
    });
}
