//! Where sled keeps the delivery log: finished deliveries' records
//! appended to segment files, and an index of them by delivery id held in
//! memory and rebuilt from the files at start.
//!
//! A log record is a few kilobytes, written once and read rarely. In a sled
//! tree it cost several times its size (sled rewrites a leaf's values each
//! time it consolidates the leaf), and even a small sled index entry per
//! delivery cost more than the rest of logging it. Appended to a file a
//! record costs one write; the index costs a map insert.
//!
//! A frame is `[u32 length of the rest][u8 kind][u64 finished at, ms][u8
//! id length][id][record]`, little endian. A delivery taken out of the log
//! (resent, retried from the DLQ) gets a frame of kind "removed" and no
//! record; its bytes stay until their segment goes. Retention deletes
//! whole segments, the oldest first, so a removal never outlives what it
//! removes.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::store::error::StoreError;
use crate::store::log::{Retention, Status};

/// A segment is closed and a new one started past this size, or once it
/// has been written to for [`SEGMENT_SPAN`]: retention deletes segments
/// last written before its cutoff, so a quiet log still ages out.
const SEGMENT_BYTES: u64 = 16 << 20;
const SEGMENT_SPAN: Duration = Duration::from_secs(3600);

/// Segment files are named by number, in the order they were started.
const SUFFIX: &str = ".seg";

/// A frame's bytes before its id: kind, finished at, id length.
const HEAD: usize = 1 + 8 + 1;

const DELIVERED: u8 = 1;
const DEAD: u8 = 2;
const REMOVED: u8 = 3;

/// The delivery log's records and their index.
pub(crate) struct Journal {
    dir: PathBuf,
    segment_bytes: u64,
    active: Mutex<Active>,
    index: RwLock<BTreeMap<Box<str>, Entry>>,
}

/// The segment being appended to.
struct Active {
    number: u32,
    file: File,
    len: u64,
    started: Instant,
}

/// Where a finished delivery's record is, and what listings filter on
/// without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub status: Status,
    pub finished_at_ms: u64,
    segment: u32,
    offset: u64,
    len: u32,
}

fn segment_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:010}{SUFFIX}"))
}

/// The segments in `dir`, by number.
fn segments(dir: &Path) -> Result<Vec<u32>, StoreError> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse().ok())
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn open_segment(dir: &Path, number: u32) -> Result<Active, StoreError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, number))?;
    let len = file.metadata()?.len();
    Ok(Active {
        number,
        file,
        len,
        started: Instant::now(),
    })
}

/// Reads segment `number`'s frames into `index`, up to the end of its last
/// whole frame (a crash of the machine can cut the last one short).
fn replay(
    dir: &Path,
    number: u32,
    index: &mut BTreeMap<Box<str>, Entry>,
) -> Result<(), StoreError> {
    let file = File::open(segment_path(dir, number))?;
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(256 << 10, file);
    let mut at: u64 = 0;
    loop {
        let mut length = [0; 4];
        match reader.read_exact(&mut length) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let length = u32::from_le_bytes(length) as u64;
        let mut head = [0; HEAD];
        let mut id = [0; u8::MAX as usize];
        let read = reader.read_exact(&mut head).and_then(|()| {
            let id = &mut id[..head[HEAD - 1] as usize];
            reader.read_exact(id)
        });
        match read {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let id_len = head[HEAD - 1] as u64;
        let Some(record_len) = length.checked_sub(HEAD as u64 + id_len) else {
            return Ok(()); // not a frame: treated as the cut-off end
        };
        let offset = at + 4 + HEAD as u64 + id_len;
        let end = offset + record_len;
        // Past the record without reading it: a seek within the buffer.
        if end > file_len {
            return Ok(());
        }
        reader.seek_relative(record_len as i64)?;
        let id: Box<str> = String::from_utf8_lossy(&id[..id_len as usize]).into();
        let finished_at_ms = u64::from_le_bytes(head[1..9].try_into().unwrap_or_default());
        let status = match head[0] {
            DELIVERED => Some(Status::Delivered),
            DEAD => Some(Status::Dead),
            _ => None,
        };
        match status {
            Some(status) => {
                index.insert(
                    id,
                    Entry {
                        status,
                        finished_at_ms,
                        segment: number,
                        offset,
                        len: record_len as u32,
                    },
                );
            }
            None => {
                index.remove(&id);
            }
        }
        at = end;
    }
}

impl Journal {
    /// Opens the journal in `dir` (created if missing), reading every
    /// segment's frames into the index.
    pub(crate) fn open(dir: &Path) -> Result<Journal, StoreError> {
        Journal::with_segment_bytes(dir, SEGMENT_BYTES)
    }

    fn with_segment_bytes(dir: &Path, segment_bytes: u64) -> Result<Journal, StoreError> {
        fs::create_dir_all(dir)?;
        let mut index = BTreeMap::new();
        let numbers = segments(dir)?;
        for &number in &numbers {
            replay(dir, number, &mut index)?;
        }
        // Appends go to a new segment: one cut short by a crash of the
        // machine is never written after, and each segment's span is known.
        let next = match numbers.last() {
            Some(&last) if fs::metadata(segment_path(dir, last))?.len() > 0 => last + 1,
            Some(&last) => last,
            None => 0,
        };
        let active = open_segment(dir, next)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            segment_bytes,
            active: Mutex::new(active),
            index: RwLock::new(index),
        })
    }

    /// Appends one frame; returns where its record is.
    fn write(
        &self,
        kind: u8,
        id: &str,
        finished_at_ms: u64,
        record: &[u8],
    ) -> Result<(u32, u64), StoreError> {
        let id = id.as_bytes();
        let id_len = u8::try_from(id.len()).map_err(|_| StoreError::Unpacked {
            key: String::from_utf8_lossy(id).into_owned(),
            reason: "a delivery id over 255 bytes".into(),
        })?;
        let rest = HEAD + id.len() + record.len();
        let mut frame = Vec::with_capacity(4 + rest);
        frame.extend_from_slice(&(rest as u32).to_le_bytes());
        frame.push(kind);
        frame.extend_from_slice(&finished_at_ms.to_le_bytes());
        frame.push(id_len);
        frame.extend_from_slice(id);
        frame.extend_from_slice(record);
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let full = active.len + frame.len() as u64 > self.segment_bytes;
        if active.len > 0 && (full || active.started.elapsed() > SEGMENT_SPAN) {
            active.file.sync_data()?;
            *active = open_segment(&self.dir, active.number + 1)?;
        }
        // One write: a process that dies leaves whole frames (the kernel
        // has them), so nothing it indexed is lost.
        active.file.write_all(&frame)?;
        let offset = active.len + (4 + HEAD + id.len()) as u64;
        active.len += frame.len() as u64;
        Ok((active.number, offset))
    }

    /// Appends `record`, the finished delivery `id`, and indexes it (in
    /// place of an earlier record of the same id).
    pub(crate) fn append(
        &self,
        id: &str,
        status: Status,
        finished_at_ms: u64,
        record: &[u8],
    ) -> Result<(), StoreError> {
        let kind = if status == Status::Dead {
            DEAD
        } else {
            DELIVERED
        };
        let (segment, offset) = self.write(kind, id, finished_at_ms, record)?;
        let entry = Entry {
            status,
            finished_at_ms,
            segment,
            offset,
            len: record.len() as u32,
        };
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.into(), entry);
        Ok(())
    }

    /// The index entry of `id`, if it is in the log.
    pub(crate) fn entry(&self, id: &str) -> Option<Entry> {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
    }

    /// Takes `id` out of the log; false when it was not in it.
    pub(crate) fn remove(&self, id: &str) -> Result<bool, StoreError> {
        if self.entry(id).is_none() {
            return Ok(false);
        }
        self.write(REMOVED, id, 0, &[])?;
        Ok(self
            .index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
            .is_some())
    }

    /// Up to `count` index entries with ids at or above `low` and below
    /// `high`, newest first. A listing takes them a batch at a time, so
    /// appends never wait for its reads.
    pub(crate) fn newest(
        &self,
        low: Option<&str>,
        high: Option<&str>,
        count: usize,
    ) -> Vec<(Box<str>, Entry)> {
        if matches!((low, high), (Some(l), Some(h)) if l >= h) {
            return Vec::new();
        }
        let lower = low.map_or(Bound::Unbounded, Bound::Included);
        let upper = high.map_or(Bound::Unbounded, Bound::Excluded);
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index
            .range::<str, _>((lower, upper))
            .rev()
            .take(count)
            .map(|(id, entry)| (id.clone(), *entry))
            .collect()
    }

    /// A reader of records that keeps the segments it opened.
    pub(crate) fn reader(&self) -> Reader<'_> {
        Reader {
            dir: &self.dir,
            open: HashMap::new(),
        }
    }

    /// Deletes whole segments: those last written more than `max_age` ago,
    /// then the oldest until the rest fit in `max_bytes`; returns how many
    /// deliveries went with them. The segment being written goes only for
    /// age (a new one is started).
    pub(crate) fn enforce(&self, retention: Retention) -> Result<usize, StoreError> {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let mut sizes = Vec::new();
        for number in segments(&self.dir)? {
            let meta = fs::metadata(segment_path(&self.dir, number))?;
            sizes.push((number, meta.len(), meta.modified()?));
        }
        let mut total: u64 = sizes.iter().map(|(_, len, _)| len).sum();
        let cutoff = retention.max_age.map(|age| {
            SystemTime::now()
                .checked_sub(age)
                .unwrap_or(SystemTime::UNIX_EPOCH)
        });
        let mut dropped = None;
        for (number, len, modified) in sizes {
            let old = cutoff.is_some_and(|cutoff| modified < cutoff);
            let large = retention.max_bytes.is_some_and(|max| total > max);
            let current = number == active.number;
            let wanted = old || (large && !current);
            if !wanted || (current && active.len == 0) {
                break;
            }
            if current {
                *active = open_segment(&self.dir, number + 1)?;
            }
            fs::remove_file(segment_path(&self.dir, number))?;
            dropped = Some(number);
            total -= len;
        }
        drop(active);
        let Some(last) = dropped else { return Ok(0) };
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        let before = index.len();
        index.retain(|_, entry| entry.segment > last);
        Ok(before - index.len())
    }

    /// Bytes on disk.
    pub(crate) fn size_on_disk(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for number in segments(&self.dir)? {
            total += fs::metadata(segment_path(&self.dir, number))?.len();
        }
        Ok(total)
    }

    /// Writes the segment being appended to out to disk.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        active.file.sync_data()?;
        Ok(())
    }
}

/// Reads records, opening each segment once.
pub(crate) struct Reader<'a> {
    dir: &'a Path,
    open: HashMap<u32, File>,
}

impl Reader<'_> {
    /// The record `entry` points to; `None` when its segment is gone.
    pub(crate) fn read(&mut self, entry: &Entry) -> Result<Option<Vec<u8>>, StoreError> {
        let file = match self.open.entry(entry.segment) {
            std::collections::hash_map::Entry::Occupied(file) => file.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                match File::open(segment_path(self.dir, entry.segment)) {
                    Ok(file) => slot.insert(file),
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let mut record = vec![0; entry.len as usize];
        match file.read_exact_at(&mut record, entry.offset) {
            Ok(()) => Ok(Some(record)),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::new_id;

    fn read(journal: &Journal, id: &str) -> Option<Vec<u8>> {
        let entry = journal.entry(id)?;
        journal.reader().read(&entry).unwrap()
    }

    fn ids(journal: &Journal) -> Vec<String> {
        journal
            .newest(None, None, usize::MAX)
            .into_iter()
            .map(|(id, _)| id.into())
            .collect()
    }

    #[test]
    fn records_and_removals_are_read_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (new_id(), new_id(), new_id());
        {
            let journal = Journal::open(dir.path()).unwrap();
            journal.append(&a, Status::Delivered, 7, b"first").unwrap();
            journal.append(&b, Status::Dead, 8, b"second").unwrap();
            journal.append(&c, Status::Delivered, 9, b"third").unwrap();
            assert!(journal.remove(&c).unwrap());
            assert!(!journal.remove(&c).unwrap());
            // Written again: replaces the first in the index.
            journal.append(&a, Status::Dead, 10, b"again").unwrap();
        }
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(read(&journal, &a).as_deref(), Some(&b"again"[..]));
        assert_eq!(read(&journal, &b).as_deref(), Some(&b"second"[..]));
        let entry = journal.entry(&b).unwrap();
        assert_eq!((entry.status, entry.finished_at_ms), (Status::Dead, 8));
        assert!(journal.entry(&c).is_none());
        assert_eq!(ids(&journal), [b.clone(), a.clone()]);
        assert_eq!(journal.newest(Some(&b), None, 10).len(), 1);
        assert_eq!(journal.newest(None, Some(&b), 10).len(), 1);
        // Appended after the reopen, after the others.
        let d = new_id();
        journal
            .append(&d, Status::Delivered, 11, b"fourth")
            .unwrap();
        assert_eq!(read(&journal, &d).as_deref(), Some(&b"fourth"[..]));
    }

    #[test]
    fn a_frame_cut_short_is_dropped_and_not_written_after() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (new_id(), new_id());
        {
            let journal = Journal::open(dir.path()).unwrap();
            journal.append(&a, Status::Delivered, 1, b"whole").unwrap();
            journal
                .append(&b, Status::Delivered, 1, b"cut short")
                .unwrap();
        }
        let path = segment_path(dir.path(), 0);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(ids(&journal), std::slice::from_ref(&a));
        let c = new_id();
        journal.append(&c, Status::Delivered, 1, b"after").unwrap();
        drop(journal);
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(read(&journal, &c).as_deref(), Some(&b"after"[..]));
        assert_eq!(ids(&journal), [c, a]);
    }

    #[test]
    fn past_max_bytes_the_oldest_segments_go_with_their_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::with_segment_bytes(dir.path(), 100).unwrap();
        let all: Vec<String> = (0..10).map(|_| new_id()).collect();
        for id in &all {
            journal
                .append(id, Status::Delivered, 1, &[b'x'; 50])
                .unwrap();
        }
        // 50 bytes and a 50-byte frame around each: one per segment.
        assert_eq!(segments(dir.path()).unwrap().len(), 10);
        let frame = journal.size_on_disk().unwrap() / 10;
        let removed = journal
            .enforce(Retention {
                max_age: None,
                max_bytes: Some(4 * frame + frame / 2),
            })
            .unwrap();
        assert_eq!(removed, 6);
        assert_eq!(journal.size_on_disk().unwrap(), 4 * frame);
        for (i, id) in all.iter().enumerate() {
            assert_eq!(read(&journal, id).is_some(), i >= 6, "delivery {i}");
        }
        // The segment being written stays, whatever its size.
        journal
            .enforce(Retention {
                max_age: None,
                max_bytes: Some(0),
            })
            .unwrap();
        assert_eq!(ids(&journal), [all[9].clone()]);
        drop(journal);
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(ids(&journal), [all[9].clone()]);
    }

    #[test]
    fn past_max_age_segments_go_the_one_being_written_too() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let old = new_id();
        journal.append(&old, Status::Delivered, 1, b"old").unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let keep = Retention {
            max_age: Some(Duration::from_secs(3600)),
            max_bytes: None,
        };
        assert_eq!(journal.enforce(keep).unwrap(), 0);
        let expire = Retention {
            max_age: Some(Duration::from_millis(10)),
            max_bytes: None,
        };
        assert_eq!(journal.enforce(expire).unwrap(), 1);
        assert!(journal.entry(&old).is_none());
        let young = new_id();
        journal
            .append(&young, Status::Delivered, 1, b"young")
            .unwrap();
        assert_eq!(read(&journal, &young).as_deref(), Some(&b"young"[..]));
        drop(journal);
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(ids(&journal), [young]);
    }

    #[test]
    fn a_record_whose_segment_is_gone_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::with_segment_bytes(dir.path(), 10).unwrap();
        let (a, b) = (new_id(), new_id());
        journal
            .append(&a, Status::Delivered, 1, b"0123456789")
            .unwrap();
        journal
            .append(&b, Status::Delivered, 1, b"0123456789")
            .unwrap();
        fs::remove_file(segment_path(dir.path(), 0)).unwrap();
        assert!(read(&journal, &a).is_none());
        assert!(read(&journal, &b).is_some());
    }
}
