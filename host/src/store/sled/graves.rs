//! Graves: the dead letters of one accepted batch, stored as one record.
//!
//! A delivery refused while its event is accepted (its plugin is suspended,
//! its request cannot be built) goes to the DLQ in the write that accepts
//! the event. One sled record per letter cost about as much as the healthy
//! delivery beside it (sled's bookkeeping per insert, plus the bytes): a
//! hostile observer took a quarter of a healthy one's rate (issue 8). So
//! the letters of one batch go into one record, a grave.
//!
//! A grave needs no index: its letters' ids are v7 UUIDs that differ only
//! in their last 16 bits (one `clock::Family`), and the grave's key is the
//! part they share, so the record holding any id is found from the id alone.
//! Letters written one at a time (after failed attempts, rejected input)
//! keep their id as their key.

use serde::de::IgnoredAny;

use crate::store::error::StoreError;
use crate::store::letter::DeadLetter;
use crate::store::record::{self, decode, encode};

/// The hyphenated id up to its last 16 bits (4 hex digits).
const SHARED: usize = 32;

/// Marks a grave's key; sorts before the hex digits, so a grave lists where
/// its letters' own keys would.
const MARK: u8 = b'*';

/// The key of the grave that would hold the letter `id` (whether or not
/// it exists); `None` for an id that is not a hyphenated UUID.
pub(crate) fn key_of(id: &str) -> Option<Vec<u8>> {
    (id.len() == 36 && id.is_ascii()).then(|| {
        let mut key = id.as_bytes()[..SHARED].to_vec();
        key.push(MARK);
        key
    })
}

/// True for a grave's key.
pub(crate) fn is_grave(key: &[u8]) -> bool {
    key.len() == SHARED + 1 && key.last() == Some(&MARK)
}

/// The letters of one DLQ record: a grave's, or the single one.
pub(crate) fn letters(key: &[u8], bytes: &[u8]) -> Result<Vec<DeadLetter>, StoreError> {
    if is_grave(key) {
        decode(key, bytes)
    } else {
        Ok(vec![decode(key, bytes)?])
    }
}

/// How many letters a record holds, without building them. An unreadable
/// grave counts as one: listing it reports it.
pub(crate) fn count(key: &[u8], bytes: &[u8]) -> u64 {
    if is_grave(key) {
        record::json(key, bytes)
            .ok()
            .and_then(|json| serde_json::from_slice::<Vec<IgnoredAny>>(&json).ok())
            .map_or(1, |all| all.len() as u64)
    } else {
        1
    }
}

/// The record that stores what is left of a record's letters: `None` when
/// nothing is left (the record goes).
pub(crate) fn rest(key: &[u8], letters: &[DeadLetter]) -> Option<Vec<u8>> {
    match letters {
        [] => None,
        [one] if !is_grave(key) => Some(encode(one)),
        many => Some(encode(&many)),
    }
}

/// The records that store these letters: each run of one family as a
/// grave, any other letter under its own id.
pub(crate) fn records(letters: Vec<DeadLetter>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut runs: Vec<(Option<Vec<u8>>, Vec<DeadLetter>)> = Vec::new();
    for letter in letters {
        let grave = key_of(&letter.id);
        match runs.last_mut() {
            Some((key, run)) if key.is_some() && *key == grave => run.push(letter),
            _ => runs.push((grave, vec![letter])),
        }
    }
    runs.into_iter()
        .flat_map(|(grave, run)| match grave {
            Some(key) if run.len() > 1 => vec![(key, encode(&run))],
            _ => run
                .into_iter()
                .map(|one| (one.id.clone().into_bytes(), encode(&one)))
                .collect(),
        })
        .collect()
}

/// Entries in a DLQ tree, counted once at open.
pub(crate) fn count_all(dlq: &sled::Tree) -> Result<u64, StoreError> {
    let mut n = 0;
    for item in dlq.iter() {
        let (key, bytes) = item?;
        n += count(&key, &bytes);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Family;
    use crate::store::letter::Failure;

    fn letter(id: String) -> DeadLetter {
        DeadLetter {
            id,
            failed_at_ms: 1,
            reason: "refused".into(),
            failure: Failure::Input {
                source: "test".into(),
                raw: "{}".into(),
            },
        }
    }

    #[test]
    fn a_family_shares_its_grave_key_and_its_ids_are_distinct_v7_uuids() {
        let mut family = Family::default();
        let ids: Vec<String> = (0..Family::SIZE + 1).map(|_| family.next_id()).collect();
        let mut seen = std::collections::HashSet::new();
        for id in &ids {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 7, "{id}");
            assert!(seen.insert(id.clone()), "{id} twice");
        }
        let first = key_of(&ids[0]).unwrap();
        assert!(is_grave(&first));
        assert!(ids[..Family::SIZE as usize]
            .iter()
            .all(|id| key_of(id).as_ref() == Some(&first)));
        assert_ne!(
            key_of(&ids[Family::SIZE as usize]).unwrap(),
            first,
            "a new family after {}",
            Family::SIZE
        );
        assert_eq!(key_of("not-an-id"), None);
    }

    #[test]
    fn runs_of_a_family_become_graves_and_the_rest_single_records() {
        let mut family = Family::default();
        let lone = crate::clock::new_id();
        let letters = vec![
            letter(family.next_id()),
            letter(family.next_id()),
            letter(lone.clone()),
            letter(Family::default().next_id()),
        ];
        let records = records(letters);
        assert_eq!(records.len(), 3);
        let (grave, bytes) = &records[0];
        assert!(is_grave(grave));
        assert_eq!(count(grave, bytes), 2);
        assert_eq!(letters_of(&records[1]), vec![lone]);
        assert_eq!(count(&records[1].0, &records[1].1), 1);
        assert!(
            !is_grave(&records[2].0),
            "a family of one is a single record"
        );
    }

    fn letters_of((key, bytes): &(Vec<u8>, Vec<u8>)) -> Vec<String> {
        letters(key, bytes)
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect()
    }

    #[test]
    fn what_is_left_keeps_the_record_kind() {
        let mut family = Family::default();
        let (a, b) = (letter(family.next_id()), letter(family.next_id()));
        let grave = key_of(&a.id).unwrap();
        let left = rest(&grave, std::slice::from_ref(&b)).unwrap();
        assert_eq!(letters(&grave, &left).unwrap(), vec![b.clone()]);
        assert_eq!(rest(&grave, &[]), None);
        let single = rest(b.id.as_bytes(), std::slice::from_ref(&b)).unwrap();
        assert_eq!(letters(b.id.as_bytes(), &single).unwrap(), vec![b]);
    }
}
