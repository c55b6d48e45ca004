//! What one component may hold, enforced twice: by the pooling allocator when a component
//! is compiled (its declared core instances, memories and tables) and by each store's
//! limiter while it runs (growth of memories and tables). A component over a cap is refused
//! with the engine's reason before anything runs, and growth past a cap traps, so no plugin
//! makes the host allocate without bound.

use wasmtime::{PoolingAllocationConfig, StoreLimits, StoreLimitsBuilder};

use crate::config::EngineConfig;

/// Core instances in one component. A Rust component has four or five (the module, the
/// adapter, the shims tying imports together); a Python one (componentize-py, dynamically
/// linked) 38. Each takes one of the engine's core instance slots, so this also bounds how
/// much of the engine one plugin instance can take.
pub(crate) const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
/// Memories in one component: its own and, for components built with a preview1 adapter,
/// the adapter's.
pub(crate) const MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables in one component: a few per module of the component.
pub(crate) const TABLES_PER_COMPONENT: u32 = 8;
/// Elements of any one table, declared or grown (wasmtime's default, made explicit: the
/// pool reserves this many pointers per table slot). The JavaScript engine's function table,
/// the largest a plugin has shown, fits.
pub(crate) const TABLE_ELEMENTS: usize = 20_000;
/// Core instance slots per component instance of the engine, all plugins together.
const CORE_INSTANCE_SLOTS_PER_INSTANCE: u32 = 8;
/// Table slots per component instance of the engine.
const TABLE_SLOTS_PER_INSTANCE: u32 = 4;

/// The pooling allocator for `config`: per-component caps as above, engine-wide totals
/// scaled by `max_instances`.
pub(crate) fn pooling(config: &EngineConfig) -> PoolingAllocationConfig {
    let instances = config.max_instances;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCE_SLOTS_PER_INSTANCE))
        .total_memories(instances)
        .total_tables(instances.saturating_mul(TABLE_SLOTS_PER_INSTANCE))
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .table_elements(TABLE_ELEMENTS)
        .max_memory_size(config.max_memory_bytes())
        // Plugins are called synchronously and allocate no GC objects. extism turns on
        // wasmtime's `async` and `gc` features, and the pool would then set up 1,000
        // fiber stacks (each with a guard page: one more memory mapping) and 1,000 GC
        // heaps (each reserving address space like a memory) per engine: test binaries
        // that start many servers ran out of mappings.
        .total_stacks(0)
        .total_gc_heaps(0);
    pool
}

/// The limits of one plugin instance's store, with `memory_bytes` of linear memory.
///
/// A failed growth traps instead of returning -1 to the guest: Rust's allocator would
/// abort anyway, and a trap tells us why.
pub(crate) fn store_limits(memory_bytes: usize) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(memory_bytes)
        .table_elements(TABLE_ELEMENTS)
        .instances(CORE_INSTANCES_PER_COMPONENT as usize)
        .memories(MEMORIES_PER_COMPONENT as usize)
        .tables(TABLES_PER_COMPONENT as usize)
        .trap_on_grow_failure(true)
        .build()
}

/// Whether a compilation failed because the component is over a cap of the pooling
/// allocator rather than invalid. wasmtime says so only in words; the runtime's own tests
/// (`limits_tests`) pin those words for every cap, so an upgrade that changes them fails
/// there, not silently here.
pub(crate) fn over_pool_caps(error: &wasmtime::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.to_string().contains("pooling allocator"))
}
