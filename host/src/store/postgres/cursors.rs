//! Where a source that reads someone else's log keeps its place: one row
//! per source, written after the deliveries of what it read are committed,
//! so a crash in between reads those rows again and never skips one.

use super::Database;
use crate::store::error::StoreError;

impl Database {
    /// The position `source` saved last, as it wrote it.
    pub(crate) async fn source_cursor(&self, source: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT position FROM source_cursors WHERE source = $1")
            .await?;
        Ok(client
            .query_opt(&statement, &[&source])
            .await?
            .map(|row| row.get(0)))
    }

    /// Saves `source`'s position, committed when it returns.
    pub(crate) async fn save_source_cursor(
        &self,
        source: &str,
        position: &[u8],
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO source_cursors (source, position) VALUES ($1, $2) \
                 ON CONFLICT (source) DO UPDATE SET position = EXCLUDED.position",
            )
            .await?;
        client.execute(&statement, &[&source, &position]).await?;
        Ok(())
    }
}
