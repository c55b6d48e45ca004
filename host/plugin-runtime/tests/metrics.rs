//! Every call outcome is counted under `lyceum_plugin_calls_total`. This file runs in its
//! own process, so it can install a global metrics recorder.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{builtin, ctx, file};
use lyceum_plugin_runtime::{
    CALLS_TOTAL, FAILED_OPEN_TOTAL, FailureMode, ModerationInput, PolicyEngine, Role, Slot,
    fixtures,
};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

#[derive(Default)]
struct Counters(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Counters {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let key = render(
            name,
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        );
        self.0
            .lock()
            .unwrap()
            .get(&key)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

fn render(name: &str, labels: impl Iterator<Item = (String, String)>) -> String {
    let mut labels: Vec<_> = labels.collect();
    labels.sort();
    format!("{name}{labels:?}")
}

struct TestRecorder(Arc<Counters>);

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let name = render(
            key.name(),
            key.labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned())),
        );
        let counter = self.0.0.lock().unwrap().entry(name).or_default().clone();
        Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn outcomes_are_counted_per_slot_plugin_and_outcome() {
    let counters = Arc::new(Counters::default());
    metrics::set_global_recorder(TestRecorder(counters.clone())).unwrap();

    let mut config = common::only(
        Slot::Chat,
        vec![
            file(fixtures::PANIC)
                .with_name("panicky")
                .with_failure(FailureMode::FailOpen),
            builtin(Slot::Chat),
        ],
    );
    config.engine.max_instances = 16;
    config.engine.pool_size = 2;
    let engine = PolicyEngine::builder(config).build().unwrap();
    let say = |text: &str| {
        engine
            .moderate_blocking(&ctx(Role::Student), &ModerationInput::send("r", text))
            .unwrap()
    };
    say("hello");
    say("hello");
    say("shit");
    say("panic");

    let calls = |plugin: &str, outcome: &str| {
        counters.get(
            CALLS_TOTAL,
            &[("slot", "chat"), ("plugin", plugin), ("outcome", outcome)],
        )
    };
    assert_eq!(
        calls("chat-moderation", "allow"),
        3,
        "the panic message reached the builtin too"
    );
    assert_eq!(calls("chat-moderation", "rewrite"), 1);
    assert_eq!(calls("panicky", "allow"), 3);
    assert_eq!(calls("panicky", "trap"), 1);
    assert_eq!(calls("panicky", "timeout"), 0);
    assert_eq!(
        counters.get(
            FAILED_OPEN_TOTAL,
            &[("slot", "chat"), ("plugin", "panicky")]
        ),
        1
    );
}
