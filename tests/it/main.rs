//! End-to-end tests: the real pipeline or the real binary, real HTTP
//! receivers on loopback, a real nats-server.

mod cli;
mod console;
mod controls;
mod crash;
mod deliveries;
mod delivery;
mod dry_run;
mod egress;
mod fuzz_corpus;
mod incoming;
mod ingest;
mod jetstream;
mod listen;
mod nats;
mod ops;
mod plugins;
mod postgres;
mod receivers;
mod redis;
mod schedule;
mod secrets;
mod soak;
mod storage;
mod tls;
mod utils;
