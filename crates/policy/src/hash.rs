//! Name preparation and suffix hashing shared by the builder, the lookup path
//! and the loader's validation.
//!
//! A query name is copied once into a fixed stack buffer and lowercased there
//! eight bytes at a time. Its labels are then hashed from the right, each
//! suffix's hash derived from the hash of the suffix one label shorter, so all
//! suffixes of a name (`example`, `bad.example`, `a.bad.example`) are hashed in
//! one pass over its bytes. The table stores the hash of each full listed name
//! computed the same way, which is what makes parent-domain matching a series
//! of plain exact-match probes.

/// Longest name accepted, in bytes, without the trailing dot (RFC 1035's 255
/// octets on the wire are 253 characters in presentation form).
pub const MAX_NAME_LEN: usize = 253;

/// Size of the scratch buffer: the longest name rounded up to whole words, plus
/// one spare word so that an 8-byte load starting at any name byte stays in
/// bounds.
pub(crate) const BUF_LEN: usize = 264;

const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HI1: u64 = 0x8080_8080_8080_8080;
const DOTS: u64 = 0x2e2e_2e2e_2e2e_2e2e;

/// ASCII-lowercases eight bytes at once; bytes >= 0x80 are left alone.
#[inline(always)]
fn lower8(x: u64) -> u64 {
    let low7 = x & LO7;
    // Bit 7 of each byte: set if the byte's low 7 bits are >= b'A' ...
    let ge_a = low7.wrapping_add(0x3f3f_3f3f_3f3f_3f3f);
    // ... and if they are > b'Z'. No carries cross bytes (max 0x7f + 0x3f).
    let gt_z = low7.wrapping_add(0x2525_2525_2525_2525);
    let upper = (ge_a & !gt_z) & !x & HI1;
    x | (upper >> 2)
}

/// Bit 7 set in every byte of `w` that is a `.`; exact (no false positives).
#[inline(always)]
fn dot_mask(w: u64) -> u64 {
    let x = w ^ DOTS;
    let y = (x & LO7).wrapping_add(LO7);
    !(y | x | LO7)
}

/// The 64x64->128 multiply folded to 64 bits: the mixing step of foldhash and
/// wyhash; one multiply per eight name bytes.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = (a as u128) * (b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

const K_CHUNK: u64 = 0x9e37_79b9_7f4a_7c15;
const K_LABEL: u64 = 0xd6e8_feb8_6659_fd93;

/// A name copied into a word-padded stack buffer, lowercased.
pub(crate) struct Prepared {
    pub buf: [u8; BUF_LEN],
    pub len: usize,
}

impl Prepared {
    /// Strips one trailing dot and lowercases; `None` for an empty name or one
    /// longer than [`MAX_NAME_LEN`], which cannot be listed.
    #[inline(always)]
    pub fn new(name: &[u8]) -> Option<Prepared> {
        let name = match name {
            [rest @ .., b'.'] => rest,
            _ => name,
        };
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return None;
        }
        let mut buf = [0u8; BUF_LEN];
        buf[..name.len()].copy_from_slice(name);
        let words = name.len().div_ceil(8);
        for i in 0..words {
            let w = word(&buf, i * 8);
            buf[i * 8..i * 8 + 8].copy_from_slice(&lower8(w).to_le_bytes());
        }
        Some(Prepared {
            buf,
            len: name.len(),
        })
    }

    /// The lowercased name.
    #[cfg(test)]
    pub fn name(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Calls `f(start, hash)` for every suffix of the name on a label
    /// boundary, shortest (the last label) first, the whole name last.
    /// `start` is the suffix's first byte in the name.
    #[inline(always)]
    pub fn for_each_suffix(&self, seed: u64, mut f: impl FnMut(usize, u64)) {
        let buf = &self.buf;
        let mut h = seed;
        let mut end = self.len;
        // Walk the words from the last, finding dots with a bit mask rather
        // than a byte loop: no branch per byte.
        let mut wi = self.len.div_ceil(8);
        while wi > 0 {
            wi -= 1;
            let base = wi * 8;
            let mut dots = dot_mask(word(buf, base));
            let valid = self.len - base;
            if valid < 8 {
                dots &= (1u64 << (valid * 8)) - 1;
            }
            while dots != 0 {
                let bit = 63 - dots.leading_zeros() as usize;
                dots &= !(1u64 << bit);
                let dot = base + bit / 8;
                h = push_label(h, buf, dot + 1, end);
                f(dot + 1, h);
                end = dot;
            }
        }
        h = push_label(h, buf, 0, end);
        f(0, h);
    }

    /// Hash of the whole name (the last value [`Self::for_each_suffix`]
    /// reports).
    pub fn full_hash(&self, seed: u64) -> u64 {
        let mut out = 0;
        self.for_each_suffix(seed, |_, h| out = h);
        out
    }
}

#[inline(always)]
fn word(buf: &[u8; BUF_LEN], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Extends a suffix hash with the label `buf[start..end]` to its left.
#[inline(always)]
fn push_label(h: u64, buf: &[u8; BUF_LEN], start: usize, end: usize) -> u64 {
    let mut x = h;
    let mut at = start;
    while at < end {
        let mut w = word(buf, at);
        let rem = end - at;
        if rem < 8 {
            w &= (1u64 << (rem * 8)) - 1;
        }
        x = fold(x ^ w, K_CHUNK);
        at += 8;
    }
    // The label length goes in last, so `ab.c` and `a.bc` (same bytes, other
    // split) hash apart.
    fold(x ^ ((end - start) as u64) ^ (1 << 63), K_LABEL)
}

/// Maps a hash onto `0..n` by multiply-shift (Lemire's "fastrange"): no
/// division, and table sizes need not be powers of two.
#[inline(always)]
pub(crate) fn reduce(h: u64, n: usize) -> usize {
    (((h as u128) * (n as u128)) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower8_matches_std() {
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b, b'A', b'Z', b'@', b'[', b'a', b'z', 0xc1]);
            let got = lower8(w).to_le_bytes();
            let mut want = w.to_le_bytes();
            want.make_ascii_lowercase();
            assert_eq!(got, want, "byte {b:#x}");
        }
    }

    #[test]
    fn dot_mask_exact() {
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b, b'.', 0, 0xae, b'.', 0x2f, 0x2d, b]);
            let m = dot_mask(w).to_le_bytes();
            for (i, byte) in w.to_le_bytes().iter().enumerate() {
                assert_eq!(m[i] == 0x80, *byte == b'.', "byte {b:#x} at {i}");
                assert!(m[i] == 0 || m[i] == 0x80);
            }
        }
    }

    fn suffixes(name: &str) -> Vec<(usize, u64)> {
        let p = Prepared::new(name.as_bytes()).unwrap();
        let mut v = Vec::new();
        p.for_each_suffix(7, |s, h| v.push((s, h)));
        v
    }

    #[test]
    fn suffix_hash_equals_hash_of_suffix_alone() {
        let name = "a.very-long-label-over-eight.b.bad.example.co.jp";
        for (start, h) in suffixes(name) {
            let alone = Prepared::new(name[start..].as_bytes()).unwrap();
            assert_eq!(alone.full_hash(7), h, "suffix {}", &name[start..]);
        }
        let starts: Vec<usize> = suffixes(name).iter().map(|s| s.0).collect();
        assert_eq!(starts.len(), 7);
        assert_eq!(starts.last(), Some(&0));
    }

    #[test]
    fn case_and_trailing_dot_do_not_change_hash() {
        let a = Prepared::new(b"Bad.EXAMPLE.").unwrap();
        let b = Prepared::new(b"bad.example").unwrap();
        assert_eq!(a.name(), b"bad.example");
        assert_eq!(a.full_hash(1), b.full_hash(1));
    }

    #[test]
    fn label_split_matters() {
        let a = Prepared::new(b"ab.c").unwrap().full_hash(0);
        let b = Prepared::new(b"a.bc").unwrap().full_hash(0);
        assert_ne!(a, b);
    }

    #[test]
    fn limits() {
        assert!(Prepared::new(b"").is_none());
        assert!(Prepared::new(b".").is_none());
        assert!(Prepared::new(&[b'a'; MAX_NAME_LEN]).is_some());
        assert!(Prepared::new(&[b'a'; MAX_NAME_LEN + 1]).is_none());
        let mut dotted = vec![b'a'; MAX_NAME_LEN];
        dotted.push(b'.');
        assert!(Prepared::new(&dotted).is_some());
    }
}
