//! A zone's content as a compact, sorted set of entries, and the
//! difference between two of them.
//!
//! An entry is what one listed name, exception or IP trigger puts in the
//! zone: a kind and an owner name relative to the origin. The records are
//! derived from it when a transfer is written (the action and the `*.`
//! twin depend on the zone's settings, not on the entry), so a million
//! entries take one byte array and one offset array: about 5 bytes plus the
//! owner's length each, instead of a heap string (and more) apiece.

use std::cmp::Ordering;

/// What an entry is. The discriminant is stored as the entry's first byte,
/// so entries sort by kind, then owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// A listed name: the zone's action (and `*.` twin with wildcards).
    Name = 1,
    /// An allowlisted name under a listed one: `rpz-passthru.` (and twin).
    Exception = 2,
    /// An `rpz-ip` trigger: the zone's action.
    Ip = 3,
    /// An `rpz-client-ip` trigger of a client-scope zone: `rpz-passthru.`.
    ClientIp = 4,
}

impl EntryKind {
    pub fn from_byte(b: u8) -> Option<EntryKind> {
        Some(match b {
            1 => EntryKind::Name,
            2 => EntryKind::Exception,
            3 => EntryKind::Ip,
            4 => EntryKind::ClientIp,
            _ => return None,
        })
    }
}

/// Longest owner an entry may have: 253 bytes of text less the shortest
/// origin (`a.`), which the zone checks again against its real origin.
pub const MAX_OWNER: usize = 251;

/// A sorted set of entries: `(kind, owner)` with owners in lowercase
/// presentation text (`bad.example`, `32.1.2.0.192.rpz-ip`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    /// Every entry as its kind byte then its owner, back to back.
    bytes: Vec<u8>,
    /// Where each entry starts in `bytes`; it ends where the next starts.
    starts: Vec<u32>,
}

impl Content {
    /// Builds a content from entries in any order; duplicates are dropped.
    /// Owners must be at most [`MAX_OWNER`] bytes (longer ones are dropped:
    /// the callers never make them).
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (EntryKind, &'a str)>) -> Content {
        let mut b = ContentBuilder::default();
        for (k, o) in entries {
            b.push(k, o);
        }
        b.finish()
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The raw entry `i`: kind byte then owner.
    fn raw(&self, i: usize) -> &[u8] {
        let start = self.starts[i] as usize;
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.bytes.len(), |e| *e as usize);
        &self.bytes[start..end]
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> (EntryKind, &str) {
        let raw = self.raw(i);
        let kind = EntryKind::from_byte(raw[0]).expect("entries are built with a valid kind");
        // Owners come in as `&str` and are stored unchanged.
        let owner = std::str::from_utf8(&raw[1..]).expect("owners are UTF-8");
        (kind, owner)
    }

    /// Every entry, in order.
    pub fn iter(&self) -> impl Iterator<Item = (EntryKind, &str)> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.bytes.capacity() + self.starts.capacity() * 4
    }

    /// Bytes of entry data (kind bytes and owners), as written to the journal.
    pub fn data_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// What changes `self` into `new`: entries only in `self` (removed) and
    /// only in `new` (added), by one merge of the two sorted sets.
    pub fn diff(&self, new: &Content) -> (Content, Content) {
        let (mut removed, mut added) = (ContentBuilder::default(), ContentBuilder::default());
        let (mut i, mut j) = (0, 0);
        while i < self.len() || j < new.len() {
            let ord = match (i < self.len(), j < new.len()) {
                (true, true) => self.raw(i).cmp(new.raw(j)),
                (true, false) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match ord {
                Ordering::Less => {
                    removed.push_raw(self.raw(i));
                    i += 1;
                }
                Ordering::Greater => {
                    added.push_raw(new.raw(j));
                    j += 1;
                }
                Ordering::Equal => {
                    i += 1;
                    j += 1;
                }
            }
        }
        // Both were filled in order from sorted inputs.
        (removed.finish_sorted(), added.finish_sorted())
    }

    /// `self` less `removed`, plus `added` (the inverse of [`diff`](Self::diff)).
    pub fn apply(&self, removed: &Content, added: &Content) -> Content {
        let mut out = ContentBuilder::default();
        let (mut i, mut r, mut a) = (0, 0, 0);
        loop {
            // Next entry of self not removed.
            while i < self.len() && r < removed.len() {
                match self.raw(i).cmp(removed.raw(r)) {
                    Ordering::Equal => {
                        i += 1;
                        r += 1;
                    }
                    Ordering::Greater => r += 1,
                    Ordering::Less => break,
                }
            }
            let cur = (i < self.len()).then(|| self.raw(i));
            let add = (a < added.len()).then(|| added.raw(a));
            match (cur, add) {
                (None, None) => break,
                (Some(c), None) => {
                    out.push_raw(c);
                    i += 1;
                }
                (None, Some(x)) => {
                    out.push_raw(x);
                    a += 1;
                }
                (Some(c), Some(x)) => match c.cmp(x) {
                    Ordering::Less => {
                        out.push_raw(c);
                        i += 1;
                    }
                    Ordering::Greater => {
                        out.push_raw(x);
                        a += 1;
                    }
                    Ordering::Equal => {
                        out.push_raw(c);
                        i += 1;
                        a += 1;
                    }
                },
            }
        }
        out.finish_sorted()
    }

    /// Writes the entries for the journal: each as one length byte, the
    /// kind byte and the owner.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.len() as u32).to_be_bytes());
        for i in 0..self.len() {
            let raw = self.raw(i);
            out.push(raw.len() as u8);
            out.extend_from_slice(raw);
        }
    }

    /// Reads what [`encode`](Self::encode) wrote; `None` if it is not that.
    pub fn decode(input: &mut &[u8]) -> Option<Content> {
        let n = u32::from_be_bytes(take(input, 4)?.try_into().ok()?) as usize;
        let mut b = ContentBuilder::default();
        for _ in 0..n {
            let len = *take(input, 1)?.first()? as usize;
            let raw = take(input, len)?;
            let (&kind, owner) = raw.split_first()?;
            EntryKind::from_byte(kind)?;
            let owner = std::str::from_utf8(owner).ok()?;
            if owner.is_empty() || owner.len() > MAX_OWNER {
                return None;
            }
            b.push_raw(raw);
        }
        Some(b.finish())
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

/// Collects entries, then sorts them once.
#[derive(Default)]
pub struct ContentBuilder {
    bytes: Vec<u8>,
    starts: Vec<u32>,
}

impl ContentBuilder {
    pub fn with_capacity(entries: usize, bytes: usize) -> ContentBuilder {
        ContentBuilder {
            bytes: Vec::with_capacity(bytes),
            starts: Vec::with_capacity(entries),
        }
    }

    pub fn push(&mut self, kind: EntryKind, owner: &str) {
        if owner.is_empty() || owner.len() > MAX_OWNER {
            return;
        }
        self.starts.push(self.bytes.len() as u32);
        self.bytes.push(kind as u8);
        self.bytes.extend_from_slice(owner.as_bytes());
    }

    fn push_raw(&mut self, raw: &[u8]) {
        self.starts.push(self.bytes.len() as u32);
        self.bytes.extend_from_slice(raw);
    }

    fn raw(&self, i: usize) -> &[u8] {
        let start = self.starts[i] as usize;
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.bytes.len(), |e| *e as usize);
        &self.bytes[start..end]
    }

    /// The content, sorted and without duplicates. Input already in order
    /// (the usual case: names come sorted) costs one pass.
    pub fn finish(self) -> Content {
        let n = self.starts.len();
        let sorted = (1..n).all(|i| self.raw(i - 1) < self.raw(i));
        if sorted {
            return self.finish_sorted();
        }
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by(|&a, &b| self.raw(a as usize).cmp(self.raw(b as usize)));
        order.dedup_by(|a, b| self.raw(*a as usize) == self.raw(*b as usize));
        let mut out = ContentBuilder::with_capacity(order.len(), self.bytes.len());
        for i in order {
            out.push_raw(self.raw(i as usize));
        }
        out.finish_sorted()
    }

    fn finish_sorted(mut self) -> Content {
        self.bytes.shrink_to_fit();
        self.starts.shrink_to_fit();
        Content {
            bytes: self.bytes,
            starts: self.starts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(entries: &[(EntryKind, &str)]) -> Content {
        Content::from_entries(entries.iter().copied())
    }

    #[test]
    fn sorted_by_kind_then_owner_without_duplicates() {
        use EntryKind::*;
        let content = c(&[
            (Ip, "32.1.2.0.192.rpz-ip"),
            (Name, "b.example"),
            (Exception, "ok.b.example"),
            (Name, "a.example"),
            (Name, "b.example"),
        ]);
        let all: Vec<_> = content.iter().collect();
        assert_eq!(
            all,
            [
                (Name, "a.example"),
                (Name, "b.example"),
                (Exception, "ok.b.example"),
                (Ip, "32.1.2.0.192.rpz-ip")
            ]
        );
    }

    #[test]
    fn diff_and_apply_are_inverse() {
        use EntryKind::*;
        let old = c(&[
            (Name, "a.example"),
            (Name, "b.example"),
            (Ip, "32.1.2.0.192.rpz-ip"),
        ]);
        let new = c(&[
            (Name, "b.example"),
            (Name, "c.example"),
            (Exception, "x.b.example"),
        ]);
        let (removed, added) = old.diff(&new);
        assert_eq!(
            removed.iter().collect::<Vec<_>>(),
            [(Name, "a.example"), (Ip, "32.1.2.0.192.rpz-ip")]
        );
        assert_eq!(
            added.iter().collect::<Vec<_>>(),
            [(Name, "c.example"), (Exception, "x.b.example")]
        );
        assert_eq!(old.apply(&removed, &added), new);
        assert_eq!(new.apply(&added, &removed), old);
        let (r, a) = new.diff(&new);
        assert!(r.is_empty() && a.is_empty());
    }

    #[test]
    fn encode_decode() {
        let content = c(&[
            (EntryKind::Name, "a.example"),
            (EntryKind::ClientIp, "24.0.2.0.192.rpz-client-ip"),
        ]);
        let mut buf = Vec::new();
        content.encode(&mut buf);
        let mut input = &buf[..];
        assert_eq!(Content::decode(&mut input).unwrap(), content);
        assert!(input.is_empty());
        let mut short = &buf[..buf.len() - 1];
        assert!(Content::decode(&mut short).is_none());
    }
}
