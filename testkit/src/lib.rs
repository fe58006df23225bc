//! Test support for wasmhook's end-to-end tests and benchmarks: real
//! servers, started fresh on free loopback ports with their state in
//! temporary directories, and stopped when dropped.
//!
//! - [`ports`]: [`free_port`] and [`wait_for_port`].
//! - [`certs`]: [`TestCa`], a private CA issuing server and client
//!   certificates for TLS tests.
//! - [`process`]: spawning children that die with the test, stopping them,
//!   the tail of their logs.
//! - [`nats`]: [`NatsServer`], plain or with JetStream; restartable on the
//!   same port and store.
//! - [`redis`]: [`RedisServer`] with an append-only file; restartable.
//! - [`postgres`]: [`PgCluster`], a private PostgreSQL cluster (`initdb` and
//!   `pg_ctl`, as the `postgres` user when run as root).
//!
//! Nothing here depends on the `wasmhook` crate, so building it never
//! compiles the host. Every server binds 127.0.0.1 only.
//!
//! The test webhook receivers of `tests/it` (scripted statuses, recorded
//! requests) and of the bench (counters, latencies, sampled signature
//! checks) have different shapes, so none is shared here.

pub mod certs;
pub mod nats;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod redis;

pub use certs::{CertFiles, TestCa};
pub use nats::{NatsOptions, NatsServer};
pub use ports::{free_port, wait_for_port};
pub use postgres::{PgCluster, PgOptions, StopMode};
pub use redis::{Fsync, RedisServer};
