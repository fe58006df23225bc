//! The error a plugin returns: one variant per WIT `error` case.

use std::fmt;

/// Why a plugin call failed. The host records the variant and the message in
/// the DLQ entry of the affected delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The event or input is not what this plugin handles.
    InvalidInput(String),
    /// The plugin's config table (or a granted key) is wrong.
    Config(String),
    /// Anything else.
    Failed(String),
}

impl Error {
    /// The event or input is not what this plugin handles.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }

    /// The plugin's config table (or a granted key) is wrong.
    pub fn config(message: impl Into<String>) -> Self {
        Self::Config(message.into())
    }

    /// Anything else.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }

    /// The message, whatever the variant.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidInput(message) | Self::Config(message) | Self::Failed(message) => message,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::InvalidInput(_) => "invalid input",
            Self::Config(_) => "config",
            Self::Failed(_) => "failed",
        };
        write!(f, "{kind}: {}", self.message())
    }
}

impl std::error::Error for Error {}

/// Turns any displayable error into one of the [`Error`] variants, with a
/// short context: `base64.decode(s).or_invalid_input("field `sig`")?`.
pub trait ResultExt<T> {
    /// Maps the error to [`Error::InvalidInput`] as `"{context}: {error}"`.
    fn or_invalid_input(self, context: &str) -> Result<T, Error>;
    /// Maps the error to [`Error::Config`] as `"{context}: {error}"`.
    fn or_config(self, context: &str) -> Result<T, Error>;
    /// Maps the error to [`Error::Failed`] as `"{context}: {error}"`.
    fn or_failed(self, context: &str) -> Result<T, Error>;
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn or_invalid_input(self, context: &str) -> Result<T, Error> {
        self.map_err(|error| Error::InvalidInput(format!("{context}: {error}")))
    }

    fn or_config(self, context: &str) -> Result<T, Error> {
        self.map_err(|error| Error::Config(format!("{context}: {error}")))
    }

    fn or_failed(self, context: &str) -> Result<T, Error> {
        self.map_err(|error| Error::Failed(format!("{context}: {error}")))
    }
}
