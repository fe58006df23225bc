//! `NAME.toml` beside `NAME.wasm`: the plugin's budgets, isolation mode and
//! the `config` table it reads through the `host.config` import.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The largest `memory_mb` a plugin may be given.
pub(crate) const MAX_MEMORY_BYTES: usize = 4 << 30;

/// Budgets for one call (and one instantiation).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Fuel per call; roughly one unit per WebAssembly instruction.
    pub fuel: u64,
    /// Linear-memory cap, bytes.
    pub memory_bytes: usize,
    /// Wall-clock deadline per call (enforced by epoch interruption).
    /// Listed as `timeout_ms`, the manifest's own key.
    #[serde(rename = "timeout_ms", serialize_with = "millis")]
    pub timeout: Duration,
    /// Largest body or output a plugin may return.
    pub max_output_bytes: usize,
    /// Failed calls in a row (traps, refused output) after which the plugin
    /// is suspended for a back-off; 0 never suspends it.
    pub suspend_after: u32,
    /// Calls of this plugin running at once; more wait for a free slot.
    pub max_concurrency: usize,
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 500_000_000,
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(1),
            max_output_bytes: 16 << 20,
            suspend_after: 5,
            max_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Whether calls share warm instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Reuse instances across calls (fast; state may persist between calls).
    Warm,
    /// A fresh instance for every call (nothing carries over).
    Fresh,
}

/// A plugin's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Budgets.
    pub limits: Limits,
    /// Instance reuse.
    pub isolation: Isolation,
    /// The `config` table as JSON text, handed to the plugin.
    pub config_json: String,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            limits: Limits::default(),
            isolation: Isolation::Warm,
            config_json: "{}".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    isolation: Option<String>,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    config: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    fuel: Option<u64>,
    memory_mb: Option<u64>,
    timeout_ms: Option<u64>,
    max_output_bytes: Option<usize>,
    suspend_after: Option<u32>,
    max_concurrency: Option<u64>,
}

impl Manifest {
    /// Reads `path`; a missing file means the defaults.
    pub fn load(path: &Path) -> Result<Manifest, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses manifest text.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        let defaults = Limits::default();
        let positive = |value: Option<u64>, key: &str| match value {
            Some(0) => Err(format!("limits.{key} must be greater than 0")),
            other => Ok(other),
        };
        let max_mb = (MAX_MEMORY_BYTES >> 20) as u64;
        if file.limits.memory_mb.is_some_and(|mb| mb > max_mb) {
            return Err(format!(
                "limits.memory_mb must be at most {max_mb} (a 32-bit linear memory)"
            ));
        }
        let limits = Limits {
            fuel: positive(file.limits.fuel, "fuel")?.unwrap_or(defaults.fuel),
            memory_bytes: positive(file.limits.memory_mb, "memory_mb")?
                .map_or(defaults.memory_bytes, |mb| {
                    (mb as usize).saturating_mul(1 << 20)
                }),
            timeout: positive(file.limits.timeout_ms, "timeout_ms")?
                .map_or(defaults.timeout, Duration::from_millis),
            max_output_bytes: file
                .limits
                .max_output_bytes
                .unwrap_or(defaults.max_output_bytes),
            suspend_after: file.limits.suspend_after.unwrap_or(defaults.suspend_after),
            max_concurrency: positive(file.limits.max_concurrency, "max_concurrency")?
                .map_or(defaults.max_concurrency, |n| n as usize),
        };
        let isolation = match file.isolation.as_deref().unwrap_or("warm") {
            "warm" => Isolation::Warm,
            "fresh" => Isolation::Fresh,
            other => return Err(format!("isolation: {other:?} is not \"warm\" or \"fresh\"")),
        };
        let config_json =
            serde_json::to_string(&file.config).map_err(|e| format!("config: {e}"))?;
        Ok(Manifest {
            limits,
            isolation,
            config_json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_limits_isolation_and_config() {
        let m = Manifest::parse(
            "isolation = \"fresh\"\n[limits]\nfuel = 1000\nmemory_mb = 8\ntimeout_ms = 50\nsuspend_after = 0\n[config]\nthreshold = 1000\nname = \"x\"\n",
        )
        .unwrap();
        assert_eq!(m.isolation, Isolation::Fresh);
        assert_eq!(m.limits.fuel, 1000);
        assert_eq!(m.limits.memory_bytes, 8 << 20);
        assert_eq!(m.limits.timeout, Duration::from_millis(50));
        assert_eq!(m.limits.suspend_after, 0);
        assert_eq!(m.config_json, r#"{"threshold":1000,"name":"x"}"#);
        assert_eq!(Manifest::parse("").unwrap(), Manifest::default());
    }

    #[test]
    fn errors_name_the_key() {
        for (text, expected) in [
            ("isolation = \"shared\"", "isolation: \"shared\" is not"),
            ("[limits]\nfuel = 0", "limits.fuel must be greater than 0"),
            ("[limits]\ncpu = 1", "unknown field `cpu`"),
            ("fuel = 1", "unknown field `fuel`"),
        ] {
            let error = Manifest::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
