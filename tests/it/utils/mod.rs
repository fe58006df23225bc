//! Shared test harness: a real HTTP receiver on loopback, wasmhook run
//! in-process or as the real binary, Python as an independent
//! implementation; private servers (nats-server, redis-server, PostgreSQL)
//! and free ports come from wasmhook-testkit.

mod binary;
mod events;
mod http;
mod in_process;
mod python;
mod receiver;

pub use binary::{
    binary, kill_on_progress, kill_scale, output_with_stdin, plugin_dist, wasmhook, wasmhook_env,
    wasmhook_stdin, Running,
};
pub use events::{delivered, fraiseql_order, metric_sum};
pub use http::{post, readyz};
pub use in_process::InProcess;
pub use python::{python, python_standard_verify, python_verify};
pub use receiver::{Received, TestReceiver};
pub use wasmhook_testkit::{
    free_port, wait_for_port, NatsServer, PgCluster, RedisServer, StopMode,
};
