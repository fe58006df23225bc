//! Where a source that reads someone else's log keeps its place: one small
//! record per source, written after the deliveries of what it read are in
//! the outbox, so a crash in between reads those rows again (at least once)
//! and never skips one.

use super::Database;
use crate::store::error::StoreError;

impl Database {
    /// The position `source` saved last, as it wrote it.
    pub(crate) fn source_cursor(&self, source: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .cursors
            .get(source.as_bytes())?
            .map(|bytes| bytes.to_vec()))
    }

    /// Saves `source`'s position and waits until it is on disk.
    pub(crate) async fn save_source_cursor(
        &self,
        source: &str,
        position: &[u8],
    ) -> Result<(), StoreError> {
        self.cursors.insert(source.as_bytes(), position)?;
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use crate::store::sled::open_in;

    #[tokio::test]
    async fn a_saved_position_is_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_in(dir.path());
            assert_eq!(store.source_cursor("log").unwrap(), None);
            store.save_source_cursor("log", b"41").await.unwrap();
            store.save_source_cursor("log", b"42").await.unwrap();
        }
        let store = open_in(dir.path());
        assert_eq!(
            store.source_cursor("log").unwrap().as_deref(),
            Some(&b"42"[..])
        );
        assert_eq!(store.source_cursor("other").unwrap(), None);
    }
}
