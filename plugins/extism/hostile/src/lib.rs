//! An Extism module for every slot that misbehaves when its input asks it to, so tests can
//! show that Extism plugins run under the same limits as components: `loop` spins forever
//! (deadline, fuel), `bomb` allocates without bound (memory), `panic` aborts (trap), `error`
//! returns an Extism error; `count` increments a key-value counter and answers with its value
//! as a rewrite. Anything else is allowed. With `mode = "panic"` in its configuration it
//! panics on every call, so it fails its smoke call at load.

use extism_pdk::{FnResult, Json, config, host_fn, plugin_fn};
use serde_json::{Value, json};

#[host_fn]
extern "ExtismHost" {
    fn lyceum_kv(request: Json<Value>) -> Json<Value>;
}

#[plugin_fn]
pub fn lyceum_policy_v0_1_0(_: ()) -> FnResult<()> {
    Ok(())
}

/// Acts on the first trigger word found anywhere in the input's text.
fn misbehave(input: &Value) -> FnResult<Option<String>> {
    if config::get("mode")?.as_deref() == Some("panic") {
        panic!("configured to panic");
    }
    let text = input.to_string();
    if text.contains("loop") {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    if text.contains("bomb") {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
    if text.contains("panic") {
        panic!("asked to panic");
    }
    if text.contains("error") {
        return Err(extism_pdk::Error::msg("asked to fail").into());
    }
    if text.contains("count") {
        let Json(answer) = unsafe {
            lyceum_kv(Json(json!({"op": "incr", "key": "count", "delta": 1, "ttlMs": null})))?
        };
        return Ok(Some(answer["val"].to_string()));
    }
    Ok(None)
}

#[plugin_fn]
pub fn moderate(Json(input): Json<Value>) -> FnResult<Json<Value>> {
    Ok(Json(match misbehave(&input)? {
        Some(n) => json!({"tag": "rewrite", "val": n}),
        None => json!({"tag": "allow"}),
    }))
}

#[plugin_fn]
pub fn precheck(Json(input): Json<Value>) -> FnResult<Json<Value>> {
    misbehave(&input)?;
    Ok(Json(json!({"tag": "accept", "val": {"folder": null, "name": null}})))
}

#[plugin_fn]
pub fn finish(Json(input): Json<Value>) -> FnResult<Json<Value>> {
    misbehave(&input)?;
    Ok(Json(json!({"tag": "accept", "val": {}})))
}

#[plugin_fn]
pub fn check_join(Json(input): Json<Value>) -> FnResult<Json<Value>> {
    misbehave(&input)?;
    Ok(Json(json!({"tag": "allow"})))
}

#[plugin_fn]
pub fn check_signal(Json(input): Json<Value>) -> FnResult<Json<Value>> {
    Ok(Json(match misbehave(&input)? {
        Some(n) => json!({"tag": "rewrite", "val": n}),
        None => json!({"tag": "relay"}),
    }))
}
