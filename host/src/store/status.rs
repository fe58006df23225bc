//! What `wasmhook storage status` and `storage migrate` report about a
//! backend: where it is, the schema's migrations (PostgreSQL), and how much
//! waits in the outbox and the DLQ.

/// One schema migration, as `V{version}__{name}.sql` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationInfo {
    /// Its version: migrations run in this order, each once.
    pub version: i64,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for MigrationInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "V{}__{}", self.version, self.name)
    }
}

/// A backend's state, read without changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `sled` or `postgres`.
    pub backend: &'static str,
    /// The sled directory, or the server (without its password).
    pub location: String,
    /// The PostgreSQL schema.
    pub schema: Option<String>,
    /// Migrations the schema has (PostgreSQL).
    pub applied: Vec<MigrationInfo>,
    /// Migrations this version of wasmhook would apply at its next start.
    pub pending: Vec<MigrationInfo>,
    /// Pending deliveries; `None` when they cannot be read now (sled held
    /// by a running wasmhook, or tables not created yet).
    pub outbox_len: Option<u64>,
    /// Entries in the DLQ; `None` as for `outbox_len`.
    pub dlq_len: Option<u64>,
    /// Bytes the database takes on disk (sled).
    pub size_on_disk: Option<u64>,
}
