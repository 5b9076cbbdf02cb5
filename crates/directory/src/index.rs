//! The compiled binding index: which holder had an address at a moment.
//!
//! Built once from every binding in the store (ten million sessions fit in
//! well under a gigabyte), immutable afterwards, and swapped whole by its
//! owner. Two questions, two paths:
//!
//! - [`BindingIndex::who_at`]: every binding whose prefix contains the
//!   address (and whose port block contains the port, behind CGNAT) and whose
//!   interval contains the moment, within a clock-skew tolerance. Bindings
//!   are grouped by prefix; a group's bindings are sorted by start, and a
//!   running maximum of their ends bounds the backward scan, so overlapping
//!   sessions are all found without scanning the group.
//! - [`BindingIndex::who_now`]: the DNS front's question, asked for every
//!   query. A second table holds, inline in its slots, the binding current at
//!   build time of each prefix: one memory access for the usual answer. When
//!   that entry no longer holds (the session ended since) the lookup falls
//!   back to the first path.
//!
//! Addresses are kept as 128-bit numbers, IPv4 as IPv4-mapped IPv6
//! (`::ffff:a.b.c.d`), so one code path serves both families; the prefix
//! lengths present are tracked per family so that a query only probes the
//! lengths that exist (usually /32 for IPv4 and /56 or /64 for IPv6).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::types::PortRange;

/// Seconds since the Unix epoch, as the index keeps them: `u32` (until 2106;
/// earlier and later times are clamped).
type Secs = u32;

/// An end that is not known yet: the binding is still held.
const OPEN: Secs = Secs::MAX;

/// Port field of a binding without a port block (all ports).
const ALL_PORTS: u32 = 0x0000_ffff;

/// One binding as given to [`IndexBuilder::add`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingRef {
    /// The store's id of the binding record (the evidence).
    pub id: i64,
    pub prefix: IpNet,
    pub ports: Option<PortRange>,
    /// Unix seconds.
    pub from: i64,
    /// Unix seconds; `None`: still held.
    pub to: Option<i64>,
    /// Who held it, as a number the caller assigns (e.g. an index into its
    /// table of subjects).
    pub holder: u32,
}

/// A binding that matched a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub binding: BindingRef,
    /// True when the moment is within the skew tolerance of the binding's
    /// start or end, rather than well inside it.
    pub near_boundary: bool,
}

#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Sess {
    from: Secs,
    to: Secs,
    /// The largest `to` of this and every earlier binding of the group.
    max_to: Secs,
    holder: u32,
    /// `first << 16 | last`.
    ports: u32,
    /// The store id, split so the record stays 4-byte aligned (28 bytes).
    id: [u32; 2],
}

impl Sess {
    fn id(&self) -> i64 {
        ((self.id[0] as u64) | ((self.id[1] as u64) << 32)) as i64
    }

    fn port_range(&self) -> Option<PortRange> {
        (self.ports != ALL_PORTS).then_some(PortRange {
            first: (self.ports >> 16) as u16,
            last: self.ports as u16,
        })
    }

    fn has_port(&self, port: u16) -> bool {
        let p = port as u32;
        (self.ports >> 16) <= p && p <= (self.ports & 0xffff)
    }
}

/// The bindings of one prefix: `sessions[start..next group's start]`.
#[derive(Clone, Copy, Debug)]
struct Group {
    key: [u64; 2],
    start: u32,
}

/// A `who_now` entry: the binding of a prefix current at build time.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Current {
    key: [u64; 2],
    from: Secs,
    to: Secs,
    /// `u32::MAX` for an empty slot; `u32::MAX - 1` when several bindings of
    /// the prefix were current (CGNAT blocks, an overlap): ask `who_at`.
    holder: u32,
    /// Index of the prefix length in [`BindingIndex::lens`].
    len_ix: u32,
}

const EMPTY: u32 = u32::MAX;
const SEVERAL: u32 = u32::MAX - 1;

/// One prefix length present in the index, with its group table.
#[derive(Clone, Debug)]
struct Len {
    /// Length in the 128-bit space (IPv4 /32 is 128).
    bits: u8,
    v4: bool,
    /// Open-addressing table of group numbers + 1 (0 = empty).
    slots: Vec<u32>,
}

/// The compiled index. See the module documentation.
#[derive(Clone, Debug)]
pub struct BindingIndex {
    sessions: Vec<Sess>,
    groups: Vec<Group>,
    /// Longest first, so the most specific prefix is probed first.
    lens: Vec<Len>,
    current: Vec<Current>,
    seed: u64,
    built_at: Secs,
}

/// Collects bindings, then [`build`](Self::build)s the index.
///
/// A large directory is collected in parts on parallel threads: each part
/// is [`sort`](Self::sort)ed on its own thread, then the parts are
/// [`merge`](Self::merge)d, which leaves little to do serially.
#[derive(Default)]
pub struct IndexBuilder {
    rows: Vec<Row>,
    sorted: bool,
}

/// (prefix length, is IPv4, prefix, binding).
type Row = (u8, bool, [u64; 2], Sess);

/// The index's order: longest prefixes first (an IPv4 /32 and an IPv6
/// /128 are both 128 bits here, told apart by family), then by prefix,
/// then by start.
fn row_order(a: &Row, b: &Row) -> std::cmp::Ordering {
    (b.0, a.1, a.2, a.3.from).cmp(&(a.0, b.1, b.2, b.3.from))
}

/// [`row_order`] as one number, exact for IPv4 and for IPv6 prefixes up to
/// /96: (length and family, then the prefix's significant bits and the
/// start). IPv6 prefixes longer than /96 only come out grouped by length.
#[inline(always)]
fn packed_order(r: &Row) -> (u16, u128) {
    let group = (u16::from(u8::MAX - r.0) << 1) | u16::from(r.1);
    let within = if r.1 {
        // IPv4: the address is the low 32 bits of the mapped key.
        u128::from(r.2[1] as u32) << 32
    } else if r.0 <= 96 {
        // The low 32 bits of a prefix up to /96 are zero.
        join(r.2)
    } else {
        0
    };
    (group, within | u128::from(r.3.from))
}

fn clamp_secs(t: i64) -> Secs {
    t.clamp(0, (OPEN - 1) as i64) as Secs
}

fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// IPv4, or IPv4 written as IPv4-mapped IPv6.
fn is_v4(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(_) => true,
        IpAddr::V6(a) => a.to_ipv4_mapped().is_some(),
    }
}

fn mask(x: u128, bits: u8) -> u128 {
    if bits == 0 {
        0
    } else {
        x & (u128::MAX << (128 - bits as u32))
    }
}

fn split(x: u128) -> [u64; 2] {
    [(x >> 64) as u64, x as u64]
}

fn join(k: [u64; 2]) -> u128 {
    ((k[0] as u128) << 64) | k[1] as u128
}

/// The prefix in the 128-bit space: (key, bits, is IPv4).
fn prefix_key(p: IpNet) -> (u128, u8, bool) {
    match p {
        IpNet::V4(n) => {
            let bits = 96 + n.prefix_len();
            (mask(to_u128(IpAddr::V4(n.network())), bits), bits, true)
        }
        IpNet::V6(n) => {
            let bits = n.prefix_len();
            (mask(u128::from(n.network()), bits), bits, false)
        }
    }
}

fn prefix_of(key: u128, bits: u8, v4: bool) -> IpNet {
    if v4 {
        let a = Ipv6Addr::from(key)
            .to_ipv4_mapped()
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        IpNet::V4(Ipv4Net::new(a, bits - 96).expect("length checked at build"))
    } else {
        IpNet::V6(Ipv6Net::new(Ipv6Addr::from(key), bits).expect("length checked at build"))
    }
}

/// Two runs in [`row_order`] as one.
fn merge_sorted(a: Vec<Row>, b: Vec<Row>) -> Vec<Row> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if row_order(y, x).is_lt() => b.next(),
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(row) => out.push(row),
            None => return out,
        }
    }
}

#[inline(always)]
fn hash(key: [u64; 2], bits: u8, seed: u64) -> u64 {
    let a = (key[0] ^ seed) as u128 * (key[1] ^ 0x9e37_79b9_7f4a_7c15 ^ bits as u64) as u128;
    let h = (a as u64) ^ ((a >> 64) as u64);
    h.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 29)
}

#[inline(always)]
fn reduce(h: u64, n: usize) -> usize {
    ((h as u128 * n as u128) >> 64) as usize
}

impl IndexBuilder {
    pub fn new() -> IndexBuilder {
        IndexBuilder::default()
    }

    pub fn with_capacity(n: usize) -> IndexBuilder {
        IndexBuilder {
            rows: Vec::with_capacity(n),
            sorted: false,
        }
    }

    /// Adds one binding. A binding that ends before it starts is kept with
    /// its end set to its start.
    pub fn add(&mut self, b: &BindingRef) {
        let (key, bits, v4) = prefix_key(b.prefix);
        let from = clamp_secs(b.from);
        let to = b.to.map_or(OPEN, |t| clamp_secs(t).max(from));
        let ports = b
            .ports
            .map_or(ALL_PORTS, |p| (p.first as u32) << 16 | p.last as u32);
        let id = b.id as u64;
        self.sorted = false;
        self.rows.push((
            bits,
            v4,
            split(key),
            Sess {
                from,
                to,
                max_to: to,
                holder: b.holder,
                ports,
                id: [id as u32, (id >> 32) as u32],
            },
        ));
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Puts the bindings in the index's order.
    pub fn sort(&mut self) {
        if !self.sorted {
            // By a packed key, which is several times faster than
            // `row_order` on ten million rows; then the rare IPv6 prefixes
            // longer than /96, which the packing cannot tell apart, by
            // `row_order` itself.
            self.rows.sort_unstable_by_key(packed_order);
            let mut start = 0;
            while start < self.rows.len() {
                let (bits, v4) = (self.rows[start].0, self.rows[start].1);
                let len = self.rows[start..]
                    .iter()
                    .take_while(|r| (r.0, r.1) == (bits, v4))
                    .count();
                if !v4 && bits > 96 {
                    self.rows[start..start + len].sort_unstable_by(row_order);
                }
                start += len;
            }
            self.sorted = true;
        }
    }

    /// One builder from several, sorting each first if it is not.
    pub fn merge(mut parts: Vec<IndexBuilder>) -> IndexBuilder {
        parts.iter_mut().for_each(IndexBuilder::sort);
        let mut merged = parts.pop().unwrap_or_default();
        while let Some(part) = parts.pop() {
            merged.rows = merge_sorted(part.rows, std::mem::take(&mut merged.rows));
        }
        merged
    }

    /// Compiles the index as of `now` (unix seconds), which decides the
    /// `who_now` table's entries.
    pub fn build(mut self, now: i64, seed: u64) -> BindingIndex {
        let now = clamp_secs(now);
        self.sort();
        let mut sessions = Vec::with_capacity(self.rows.len());
        let mut groups: Vec<Group> = Vec::new();
        // Per group, its index in `lens`.
        let mut group_len: Vec<u32> = Vec::new();
        let mut lens: Vec<Len> = Vec::new();
        let mut last: Option<(u8, bool, [u64; 2])> = None;
        for (bits, v4, key, mut s) in self.rows {
            if last != Some((bits, v4, key)) {
                groups.push(Group {
                    key,
                    start: sessions.len() as u32,
                });
                if lens
                    .last()
                    .is_none_or(|l: &Len| (l.bits, l.v4) != (bits, v4))
                {
                    lens.push(Len {
                        bits,
                        v4,
                        slots: Vec::new(),
                    });
                }
                group_len.push(lens.len() as u32 - 1);
                last = Some((bits, v4, key));
            } else {
                let prev: &Sess = sessions.last().expect("group has a first binding");
                s.max_to = s.max_to.max(prev.max_to);
            }
            sessions.push(s);
        }
        groups.push(Group {
            key: [0, 0],
            start: sessions.len() as u32,
        });

        // One group table per length; a group's length is found by range.
        let mut g = 0;
        for (li, len) in lens.iter_mut().enumerate() {
            let first = g;
            while g < group_len.len() && group_len[g] == li as u32 {
                g += 1;
            }
            let n = g - first;
            let size = (n * 2).max(4);
            let mut slots = vec![0u32; size];
            for (i, grp) in groups[first..g].iter().enumerate() {
                let mut pos = reduce(hash(grp.key, len.bits, seed), size);
                while slots[pos] != 0 {
                    pos = if pos + 1 == size { 0 } else { pos + 1 };
                }
                slots[pos] = (first + i) as u32 + 1;
            }
            len.slots = slots;
        }

        // The who_now table: per group, the binding(s) holding it at `now`.
        let mut current_rows: Vec<Current> = Vec::new();
        for (gi, grp) in groups[..groups.len() - 1].iter().enumerate() {
            let range = grp.start as usize..groups[gi + 1].start as usize;
            let mut found: Option<Current> = None;
            // A binding known to start later (sessions are by start) ends
            // the entry there: from then on the newest start decides.
            let later = sessions[range.clone()]
                .iter()
                .find(|s| s.from > now)
                .map_or(OPEN, |s| s.from);
            for s in &sessions[range] {
                if s.from <= now && now <= s.to {
                    found = Some(match found {
                        None => Current {
                            key: grp.key,
                            from: s.from,
                            to: s.to,
                            holder: s.holder,
                            len_ix: 0,
                        },
                        Some(c) => Current {
                            holder: SEVERAL,
                            from: c.from.max(s.from),
                            to: c.to.min(s.to),
                            ..c
                        },
                    });
                }
            }
            if let Some(mut c) = found {
                c.len_ix = group_len[gi];
                c.to = c.to.min(later);
                current_rows.push(c);
            }
        }
        let size = (current_rows.len() * 2).max(4);
        let mut current = vec![
            Current {
                holder: EMPTY,
                ..Default::default()
            };
            size
        ];
        for c in current_rows {
            let bits = lens[c.len_ix as usize].bits;
            let mut pos = reduce(hash(c.key, bits, seed ^ 1), size);
            while current[pos].holder != EMPTY {
                pos = if pos + 1 == size { 0 } else { pos + 1 };
            }
            current[pos] = c;
        }
        BindingIndex {
            sessions,
            groups,
            lens,
            current,
            seed,
            built_at: now,
        }
    }
}

impl BindingIndex {
    /// An index with no bindings.
    pub fn empty() -> BindingIndex {
        IndexBuilder::new().build(0, 0)
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// The longest prefix length among the bindings of one family (an
    /// IPv4 /32 is 32), if it has any.
    pub fn longest_prefix_len(&self, v4: bool) -> Option<u8> {
        // `lens` is longest first.
        let l = self.lens.iter().find(|l| l.v4 == v4)?;
        Some(if v4 { l.bits - 96 } else { l.bits })
    }

    /// The first start after `t` of a binding of exactly `prefix` (one
    /// known in advance), if the index holds one.
    pub fn next_start(&self, prefix: IpNet, t: i64) -> Option<i64> {
        let (key, bits, v4) = prefix_key(prefix);
        let len = self.lens.iter().find(|l| (l.bits, l.v4) == (bits, v4))?;
        let g = self.group(len, split(key))?;
        let ss = &self.sessions[self.groups[g].start as usize..self.groups[g + 1].start as usize];
        let t = clamp_secs(t);
        ss.get(ss.partition_point(|s| s.from <= t))
            .map(|s| i64::from(s.from))
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.sessions.capacity() * size_of::<Sess>()
            + self.groups.capacity() * size_of::<Group>()
            + self.current.capacity() * size_of::<Current>()
            + self
                .lens
                .iter()
                .map(|l| l.slots.capacity() * 4)
                .sum::<usize>()
    }

    /// When the index was built (unix seconds).
    pub fn built_at(&self) -> i64 {
        self.built_at as i64
    }

    fn group(&self, len: &Len, key: [u64; 2]) -> Option<usize> {
        let size = len.slots.len();
        let mut pos = reduce(hash(key, len.bits, self.seed), size);
        loop {
            let g = len.slots[pos];
            if g == 0 {
                return None;
            }
            let g = g as usize - 1;
            if self.groups[g].key == key {
                return Some(g);
            }
            pos = if pos + 1 == size { 0 } else { pos + 1 };
        }
    }

    /// Every binding whose prefix contains `addr` (and whose port block
    /// contains `port`, when both are known) and whose interval contains `t`
    /// give or take `skew` seconds, most specific prefix first, then by
    /// start. Appends to `out`.
    pub fn who_at(
        &self,
        addr: IpAddr,
        port: Option<u16>,
        t: i64,
        skew: u32,
        out: &mut Vec<Candidate>,
    ) {
        let (x, v4) = (to_u128(addr), is_v4(addr));
        let t = clamp_secs(t);
        let lo = t.saturating_sub(skew);
        let hi = t.saturating_add(skew);
        for len in &self.lens {
            if len.v4 != v4 {
                continue;
            }
            let key = split(mask(x, len.bits));
            let Some(g) = self.group(len, key) else {
                continue;
            };
            let range = self.groups[g].start as usize..self.groups[g + 1].start as usize;
            let ss = &self.sessions[range];
            // The bindings that start at or before hi; walking back from the
            // last of them, stop once no earlier binding ends at or after lo.
            let end = ss.partition_point(|s| s.from <= hi);
            let first_new = out.len();
            let prefix = prefix_of(join(key), len.bits, len.v4);
            for s in ss[..end].iter().rev() {
                if s.max_to < lo {
                    break;
                }
                if s.to < lo {
                    continue;
                }
                if let Some(p) = port
                    && !s.has_port(p)
                {
                    continue;
                }
                let near = t < s.from.saturating_add(skew)
                    || (s.to != OPEN && t.saturating_add(skew) > s.to);
                out.push(Candidate {
                    binding: BindingRef {
                        id: s.id(),
                        prefix,
                        ports: s.port_range(),
                        from: s.from as i64,
                        to: (s.to != OPEN).then_some(s.to as i64),
                        holder: s.holder,
                    },
                    near_boundary: near,
                });
            }
            // Found newest first; by start within the prefix.
            out[first_new..].reverse();
        }
    }

    /// The holder of `addr` at `now` (unix seconds), as [`holder_now`]
    /// decides it: the most specific prefix held, a binding that ended at
    /// `now` or before no longer holds it, and of overlapping holders the
    /// newest start. Exact, no skew: the DNS front asks this for every
    /// query.
    #[inline]
    pub fn who_now(&self, addr: IpAddr, now: i64) -> Option<u32> {
        let (x, v4) = (to_u128(addr), is_v4(addr));
        let now = clamp_secs(now);
        let size = self.current.len();
        for (ix, len) in self.lens.iter().enumerate() {
            if len.v4 != v4 {
                continue;
            }
            let key = split(mask(x, len.bits));
            let mut pos = reduce(hash(key, len.bits, self.seed ^ 1), size);
            loop {
                let c = &self.current[pos];
                if c.holder == EMPTY {
                    break;
                }
                if c.key == key && c.len_ix == ix as u32 {
                    if c.holder != SEVERAL && c.from <= now && now < c.to {
                        return Some(c.holder);
                    }
                    // Changed since the build, or shared: the full path.
                    return self.who_now_slow(addr, now);
                }
                pos = if pos + 1 == size { 0 } else { pos + 1 };
            }
        }
        // Nothing was current at build time; something may hold it now (a
        // binding known in advance, such as a static assignment from a later
        // date). An address without any binding costs one probe more.
        self.who_now_slow(addr, now)
    }

    #[cold]
    fn who_now_slow(&self, addr: IpAddr, now: Secs) -> Option<u32> {
        let mut out = Vec::new();
        self.who_at(addr, None, now as i64, 0, &mut out);
        holder_now(&out, now as i64)
    }
}

/// Who holds an address at `now`, of the bindings found for it (by
/// [`BindingIndex::who_at`] without skew, or any list of them): the DNS
/// front's question, which is about today's answer, not about the past.
///
/// - A binding holds from its start up to, not including, its end: a
///   stopped session is over at once (the clock-skew tolerance is for
///   attributing past events, not for this question).
/// - The most specific prefix held decides.
/// - Several holders of it: when their bindings are addresses (no CGNAT
///   port block), the newest start decides (a Start that arrived before
///   the previous holder's Stop); a tie, or port blocks shared by several
///   holders, gives `None`.
pub fn holder_now(cands: &[Candidate], now: i64) -> Option<u32> {
    let holds = |c: &&Candidate| c.binding.from <= now && c.binding.to.is_none_or(|t| now < t);
    let top = cands
        .iter()
        .filter(holds)
        .map(|c| c.binding.prefix.prefix_len())
        .max()?;
    let mut held = cands
        .iter()
        .filter(holds)
        .filter(|c| c.binding.prefix.prefix_len() == top);
    let first = held.next()?;
    let (mut newest, mut tie, mut shared, mut ports) =
        (first, false, false, first.binding.ports.is_some());
    for c in held {
        ports |= c.binding.ports.is_some();
        shared |= c.binding.holder != first.binding.holder;
        if c.binding.from > newest.binding.from {
            (newest, tie) = (c, false);
        } else if c.binding.from == newest.binding.from && c.binding.holder != newest.binding.holder
        {
            tie = true;
        }
    }
    match (shared, ports || tie) {
        (false, _) => Some(first.binding.holder),
        (true, false) => Some(newest.binding.holder),
        (true, true) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: i64, prefix: &str, from: i64, to: Option<i64>, holder: u32) -> BindingRef {
        BindingRef {
            id,
            prefix: prefix.parse().unwrap(),
            ports: None,
            from,
            to,
            holder,
        }
    }

    fn holders(ix: &BindingIndex, addr: &str, port: Option<u16>, t: i64, skew: u32) -> Vec<u32> {
        let mut out = Vec::new();
        ix.who_at(addr.parse().unwrap(), port, t, skew, &mut out);
        out.iter().map(|c| c.binding.holder).collect()
    }

    #[test]
    fn back_to_back_and_overlapping_sessions() {
        let mut ib = IndexBuilder::new();
        ib.add(&b(1, "192.0.2.1/32", 1000, Some(2000), 1));
        ib.add(&b(2, "192.0.2.1/32", 2000, Some(3000), 2));
        // A long session overlapping several short ones on another address.
        ib.add(&b(3, "192.0.2.2/32", 0, Some(10_000), 3));
        ib.add(&b(4, "192.0.2.2/32", 100, Some(200), 4));
        ib.add(&b(5, "192.0.2.2/32", 5000, Some(6000), 5));
        let ix = ib.build(1500, 7);
        assert_eq!(holders(&ix, "192.0.2.1", None, 1500, 0), [1]);
        assert_eq!(holders(&ix, "192.0.2.1", None, 2500, 0), [2]);
        // The hand-over moment belongs to both.
        assert_eq!(holders(&ix, "192.0.2.1", None, 2000, 0), [1, 2]);
        // Within the skew of the boundary, both, and flagged.
        let mut out = Vec::new();
        ix.who_at("192.0.2.1".parse().unwrap(), None, 1990, 30, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|c| c.near_boundary));
        assert_eq!(holders(&ix, "192.0.2.1", None, 500, 0), Vec::<u32>::new());
        assert_eq!(holders(&ix, "192.0.2.2", None, 5500, 0), [3, 5]);
        assert_eq!(holders(&ix, "192.0.2.2", None, 7000, 0), [3]);
        assert_eq!(holders(&ix, "192.0.2.3", None, 5500, 0), Vec::<u32>::new());
    }

    #[test]
    fn ipv6_prefixes_contain_addresses_and_the_most_specific_comes_first() {
        let mut ib = IndexBuilder::new();
        ib.add(&b(1, "2001:db8:0:100::/56", 0, None, 1));
        ib.add(&b(2, "2001:db8:0:1ab::1/128", 0, None, 2));
        ib.add(&b(3, "198.51.100.0/24", 0, None, 3));
        let ix = ib.build(10, 1);
        assert_eq!(holders(&ix, "2001:db8:0:1ff::9", None, 50, 0), [1]);
        assert_eq!(
            holders(&ix, "2001:db8:0:200::9", None, 50, 0),
            Vec::<u32>::new()
        );
        assert_eq!(holders(&ix, "2001:db8:0:1ab::1", None, 50, 0), [2, 1]);
        // IPv4 never matches IPv6 prefixes and the reverse.
        assert_eq!(holders(&ix, "198.51.100.77", None, 50, 0), [3]);
        assert_eq!(holders(&ix, "::c633:644d", None, 50, 0), Vec::<u32>::new());
        assert_eq!(
            ix.who_now("2001:db8:0:1ab::1".parse().unwrap(), 50),
            Some(2)
        );
        assert_eq!(
            ix.who_now("2001:db8:0:1ac::1".parse().unwrap(), 50),
            Some(1)
        );
        assert_eq!(ix.who_now("198.51.100.1".parse().unwrap(), 50), Some(3));
        assert_eq!(ix.who_now("198.51.101.1".parse().unwrap(), 50), None);
    }

    #[test]
    fn sort_puts_rows_in_row_order() {
        // Prefixes of every kind the packed key treats differently: IPv4
        // of several lengths, IPv6 up to /96 and beyond it, and starts
        // that tie on the prefix.
        let mut rng = crate::synth::Rng::new(9);
        let mut b = IndexBuilder::new();
        for id in 1..=20_000 {
            let len = [8u8, 24, 32, 48, 56, 64, 96, 112, 127, 128][rng.below(10) as usize];
            let prefix: IpNet = if len <= 32 && rng.below(2) == 0 {
                Ipv4Net::new(Ipv4Addr::from(rng.next_u64() as u32 & 0xff00_00ff), len)
                    .unwrap()
                    .trunc()
                    .into()
            } else {
                let a = Ipv6Addr::from(u128::from(rng.next_u64()) << 64 | u128::from(rng.below(4)));
                Ipv6Net::new(a, len).unwrap().trunc().into()
            };
            b.add(&BindingRef {
                id,
                prefix,
                ports: None,
                from: rng.below(50) as i64,
                to: None,
                holder: 0,
            });
        }
        let mut expected = b.rows.clone();
        expected.sort_by(row_order);
        b.sort();
        let key = |r: &Row| (r.0, r.1, r.2, r.3.from);
        let first_out_of_order = b
            .rows
            .iter()
            .zip(&expected)
            .position(|(a, e)| key(a) != key(e));
        assert_eq!(
            first_out_of_order.map(|i| (key(&b.rows[i]), key(&expected[i]))),
            None
        );
    }

    #[test]
    fn parts_merged_answer_as_one_builder() {
        let sessions = crate::synth::sessions(20_000, 30, 2_000, 5);
        let now = crate::synth::epoch().timestamp() + 15 * 86400;
        let mut whole = IndexBuilder::new();
        // Three parts, as three load threads read them.
        let mut parts: Vec<IndexBuilder> = (0..3).map(|_| IndexBuilder::new()).collect();
        for (i, s) in sessions.iter().enumerate() {
            whole.add(s);
            parts[i % 3].add(s);
        }
        parts[0].sort(); // sorted or not, merge takes both
        let (whole, merged) = (
            whole.build(now, 5),
            IndexBuilder::merge(parts).build(now, 5),
        );
        assert_eq!(whole.len(), merged.len());
        for s in sessions.iter().step_by(7) {
            let addr = match s.prefix {
                IpNet::V4(n) => IpAddr::V4(n.network()),
                IpNet::V6(n) => IpAddr::V6(n.network()),
            };
            let (mut a, mut b) = (Vec::new(), Vec::new());
            whole.who_at(addr, None, s.from + 1, 60, &mut a);
            merged.who_at(addr, None, s.from + 1, 60, &mut b);
            assert!(!a.is_empty());
            let ids = |v: &[Candidate]| {
                v.iter()
                    .map(|c| (c.binding.id, c.binding.holder))
                    .collect::<Vec<_>>()
            };
            assert_eq!(ids(&a), ids(&b), "{addr} at {}", s.from + 1);
            assert_eq!(whole.who_now(addr, now), merged.who_now(addr, now));
        }
    }

    #[test]
    fn cgnat_port_blocks() {
        let mut ib = IndexBuilder::new();
        for (i, first) in [1024u16, 2048, 3072].into_iter().enumerate() {
            ib.add(&BindingRef {
                ports: PortRange::new(first, first + 1023),
                ..b(i as i64, "203.0.113.7/32", 0, None, i as u32 + 10)
            });
        }
        let ix = ib.build(5, 3);
        assert_eq!(holders(&ix, "203.0.113.7", Some(2100), 9, 0), [11]);
        assert_eq!(
            holders(&ix, "203.0.113.7", Some(80), 9, 0),
            Vec::<u32>::new()
        );
        assert_eq!(holders(&ix, "203.0.113.7", None, 9, 0), [10, 11, 12]);
        // Shared: who_now does not pick one.
        assert_eq!(ix.who_now("203.0.113.7".parse().unwrap(), 9), None);
    }

    #[test]
    fn who_now_follows_time_past_the_build() {
        let mut ib = IndexBuilder::new();
        ib.add(&b(1, "192.0.2.9/32", 100, Some(200), 1));
        ib.add(&b(2, "192.0.2.9/32", 300, None, 2));
        let ix = ib.build(150, 9);
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(ix.who_now(a, 150), Some(1));
        assert_eq!(ix.who_now(a, 250), None);
        assert_eq!(ix.who_now(a, 350), Some(2));
        assert_eq!(ix.who_now(a, 50), None);
    }

    #[test]
    fn who_now_a_stop_ends_at_once_and_the_newest_start_decides() {
        let a: IpAddr = "192.0.2.44".parse().unwrap();
        // Back to back: at the hand-over second the new holder holds it.
        let mut ib = IndexBuilder::new();
        ib.add(&b(1, "192.0.2.44/32", 100, Some(200), 1));
        ib.add(&b(2, "192.0.2.44/32", 200, None, 2));
        let ix = ib.build(150, 3);
        assert_eq!(ix.who_now(a, 200), Some(2));
        assert_eq!(ix.who_now(a, 199), Some(1));
        // Overlapping: the old holder's Stop has not come yet.
        let mut ib = IndexBuilder::new();
        ib.add(&b(1, "192.0.2.44/32", 100, None, 1));
        ib.add(&b(2, "192.0.2.44/32", 300, None, 2));
        let ix = ib.build(400, 3);
        assert_eq!(ix.who_now(a, 400), Some(2));
        assert_eq!(ix.who_now(a, 250), Some(1));
        // Built before the new holder's Start, asked after it.
        let mut ib = IndexBuilder::new();
        ib.add(&b(1, "192.0.2.44/32", 100, None, 1));
        ib.add(&b(2, "192.0.2.44/32", 300, None, 2));
        let ix = ib.build(150, 3);
        assert_eq!(ix.who_now(a, 150), Some(1));
        assert_eq!(ix.who_now(a, 350), Some(2));
        assert_eq!(
            ix.next_start("192.0.2.44/32".parse().unwrap(), 150),
            Some(300)
        );
        assert_eq!(ix.next_start("192.0.2.44/32".parse().unwrap(), 300), None);
        assert_eq!(ix.next_start("192.0.2.45/32".parse().unwrap(), 0), None);
        assert_eq!(ix.longest_prefix_len(true), Some(32));
        assert_eq!(ix.longest_prefix_len(false), None);
        // Two Starts in the same second: nobody is sure.
        let mut ib = IndexBuilder::new();
        ib.add(&b(1, "192.0.2.44/32", 300, None, 1));
        ib.add(&b(2, "192.0.2.44/32", 300, None, 2));
        assert_eq!(ib.build(400, 3).who_now(a, 400), None);
    }

    #[test]
    fn a_brute_force_oracle_agrees() {
        // Random bindings on a few addresses; every answer checked against
        // a linear scan.
        let mut rng = 0x1234_5678_u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut all = Vec::new();
        let mut ib = IndexBuilder::new();
        for id in 0..2000 {
            let a = next(20);
            let prefix = if next(3) == 0 {
                format!("2001:db8:{a:x}::/48")
            } else {
                format!("10.0.0.{a}/32")
            };
            let from = next(100_000) as i64;
            let to = (next(5) != 0).then(|| from + next(20_000) as i64);
            let r = b(id, &prefix, from, to, next(50) as u32);
            ib.add(&r);
            all.push(r);
        }
        let ix = ib.build(50_000, 5);
        for _ in 0..3000 {
            let a = next(22);
            let addr: IpAddr = if next(3) == 0 {
                format!("2001:db8:{a:x}::5").parse().unwrap()
            } else {
                format!("10.0.0.{a}").parse().unwrap()
            };
            let t = next(130_000) as i64;
            let skew = next(3) as u32 * 100;
            let mut got: Vec<i64> = Vec::new();
            let mut out = Vec::new();
            ix.who_at(addr, None, t, skew, &mut out);
            got.extend(out.iter().map(|c| c.binding.id));
            got.sort();
            let mut want: Vec<i64> = all
                .iter()
                .filter(|r| {
                    r.prefix.contains(&addr)
                        && r.from - skew as i64 <= t
                        && r.to.is_none_or(|to| to + skew as i64 >= t)
                })
                .map(|r| r.id)
                .collect();
            want.sort();
            assert_eq!(got, want, "{addr} at {t} skew {skew}");
            // who_now: of the bindings holding the most specific prefix
            // (from <= t < to), the one holder, else the newest start's
            // when it is alone.
            let held: Vec<&BindingRef> = all
                .iter()
                .filter(|r| r.prefix.contains(&addr) && r.from <= t && r.to.is_none_or(|to| t < to))
                .collect();
            let top = held.iter().map(|r| r.prefix.prefix_len()).max();
            let held: Vec<&&BindingRef> = held
                .iter()
                .filter(|r| Some(r.prefix.prefix_len()) == top)
                .collect();
            let mut hs: Vec<u32> = held.iter().map(|r| r.holder).collect();
            hs.sort();
            hs.dedup();
            let want_now = match hs.len() {
                0 => None,
                1 => Some(hs[0]),
                _ => {
                    let newest = held.iter().map(|r| r.from).max().unwrap();
                    let mut at_newest: Vec<u32> = held
                        .iter()
                        .filter(|r| r.from == newest)
                        .map(|r| r.holder)
                        .collect();
                    at_newest.sort();
                    at_newest.dedup();
                    (at_newest.len() == 1).then(|| at_newest[0])
                }
            };
            assert_eq!(ix.who_now(addr, t), want_now, "who_now {addr} at {t}");
        }
    }
}
