//! Chat plugins written in WebAssembly text, for hostile behaviour a Rust plugin cannot show
//! reliably: a recursion no compiler turns into a loop, a table grown on purpose, a verdict
//! of 16 MiB, a component made of dozens of core instances.
//!
//! Each is a complete `chat-moderation` component (it exports
//! `lyceum:policy/moderation@0.1.0` with the WIT's types), so it passes every check of a
//! load and reaches the engine. It allows a message without attachments, so the smoke call
//! at load and a test's "next call" work; a message with attachments runs `on_attachments`
//! with the attachment count in the local `$n`.

/// Where the host writes the call's arguments (a bump allocator starts here, and each call
/// starts it again).
const HEAP: u32 = 4096;
/// Where the verdict is written: a discriminant byte, its payload from `VERDICT + 4`.
const VERDICT: u32 = 1024;
/// Where big answers are built.
const BIG: u32 = 1 << 20;

/// The plugin, with extra core module items (`module_items`: functions, tables), the body
/// run for messages with attachments, and extra component items (`component_items`: more
/// core modules and instances).
pub fn chat_plugin(module_items: &str, on_attachments: &str, component_items: &str) -> Vec<u8> {
    let text = format!(
        r#"
(component
  (core module $main
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const {HEAP}))
    (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
      (local $at i32)
      (local.set $at
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (global.set $heap (i32.add (local.get $at) (local.get $size)))
      (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
        (then
          (drop (memory.grow
            (i32.sub (i32.add (i32.shr_u (global.get $heap) (i32.const 16)) (i32.const 1))
                     (memory.size))))))
      (local.get $at))
    {module_items}
    ;; The arguments (context, message) are passed in memory: attachment-count is at 108.
    (func (export "moderate") (param $args i32) (result i32)
      (local $n i32)
      (local.set $n (i32.load offset=108 (local.get $args)))
      (global.set $heap (i32.const {HEAP}))
      (i32.store8 (i32.const {VERDICT}) (i32.const 0))
      (if (i32.ne (local.get $n) (i32.const 0))
        (then {on_attachments}))
      (i32.const {VERDICT})))
  (core instance $i (instantiate $main))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "cabi_realloc" (core func $realloc))
  (alias core export $i "moderate" (core func $core_moderate))
  {component_items}
  (type $role (enum "student" "instructor" "admin"))
  (type $context (record
    (field "request-id" string)
    (field "actor-id" string)
    (field "actor-role" $role)
    (field "course-id" (option string))
    (field "room-id" (option string))
    (field "session-id" (option string))
    (field "at-unix-ms" u64)))
  (type $refusal (record (field "code" string) (field "reason" string)))
  (type $event (enum "send" "edit"))
  (type $message (record
    (field "room-id" string)
    (field "message-id" (option string))
    (field "event" $event)
    (field "content" string)
    (field "reply-to" (option string))
    (field "attachment-count" u32)))
  (type $verdict (variant
    (case "allow")
    (case "reject" $refusal)
    (case "rewrite" string)
    (case "flag" string)))
  (type $moderate-type (func (param "ctx" $context) (param "message" $message) (result $verdict)))
  (func $moderate (type $moderate-type)
    (canon lift (core func $core_moderate) (memory $mem) (realloc $realloc)))
  (instance $moderation
    (export "role" (type $role))
    (export "context" (type $context))
    (export "refusal" (type $refusal))
    (export "message-event" (type $event))
    (export "message" (type $message))
    (export "verdict" (type $verdict))
    (export "moderate" (func $moderate)))
  (export "lyceum:policy/moderation@0.1.0" (instance $moderation)))
"#
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("the test plugin does not assemble: {e}"))
}

/// Recurses as deep as the message has attachments, then allows: each level is a real call
/// frame on the WebAssembly stack (the addition after the call keeps it from being a tail
/// call), and nothing lives in linear memory.
pub fn recursing() -> Vec<u8> {
    chat_plugin(
        r#"(func $down (param $depth i32) (result i32)
             (if (result i32) (i32.eqz (local.get $depth))
               (then (i32.const 0))
               (else (i32.add (i32.const 1)
                              (call $down (i32.sub (local.get $depth) (i32.const 1)))))))"#,
        "(drop (call $down (local.get $n)))",
        "",
    )
}

/// Grows its table by a million elements when a message has attachments.
pub fn table_grower() -> Vec<u8> {
    chat_plugin(
        "(table $t 1 funcref)",
        "(drop (table.grow $t (ref.null func) (i32.const 1000000)))",
        "",
    )
}

/// Declares a table of `elements` elements.
pub fn table_declarer(elements: u32) -> Vec<u8> {
    chat_plugin(&format!("(table {elements} funcref)"), "", "")
}

/// Instantiates an empty core module `count` times besides its own.
pub fn instance_multiplier(count: usize) -> Vec<u8> {
    let mut items = String::from("(core module $empty)\n");
    for _ in 0..count {
        items.push_str("(core instance (instantiate $empty))\n");
    }
    chat_plugin("", "", &items)
}

/// Instantiates a core module with a memory of its own `count` times besides its own.
pub fn memory_multiplier(count: usize) -> Vec<u8> {
    let mut items = String::from("(core module $memory (memory 1))\n");
    for _ in 0..count {
        items.push_str("(core instance (instantiate $memory))\n");
    }
    chat_plugin("", "", &items)
}

/// The case of the moderation verdict a big answer takes.
#[derive(Clone, Copy, Debug)]
pub enum Big {
    /// `reject`, with a code and a reason of the size each.
    Reject,
    /// `rewrite` to a text of the size.
    Rewrite,
    /// `flag` with a reason of the size.
    Flag,
}

/// Answers a message with attachments with a verdict carrying `bytes` bytes of `a`s: its
/// memory must first grow to hold them, within the plugin's memory cap or not at all.
pub fn big_answer(case: Big, bytes: u32) -> Vec<u8> {
    let pages = (BIG + bytes).div_ceil(65536);
    let discriminant = match case {
        Big::Reject => 1,
        Big::Rewrite => 2,
        Big::Flag => 3,
    };
    let body = format!(
        r#"(if (i32.lt_u (memory.size) (i32.const {pages}))
             (then (drop (memory.grow (i32.sub (i32.const {pages}) (memory.size))))))
           (memory.fill (i32.const {BIG}) (i32.const 0x61) (i32.const {bytes}))
           (i32.store8 (i32.const {VERDICT}) (i32.const {discriminant}))
           (i32.store (i32.const {p0}) (i32.const {BIG}))
           (i32.store (i32.const {l0}) (i32.const {bytes}))
           (i32.store (i32.const {p1}) (i32.const {BIG}))
           (i32.store (i32.const {l1}) (i32.const {bytes}))"#,
        p0 = VERDICT + 4,
        l0 = VERDICT + 8,
        p1 = VERDICT + 12,
        l1 = VERDICT + 16,
    );
    chat_plugin("", &body, "")
}
