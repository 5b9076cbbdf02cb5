//! Name preparation and suffix hashing shared by the builder, the lookup path
//! and the loader's validation.
//!
//! A name is copied once into a fixed stack buffer, *right-aligned* so that it
//! ends at the buffer's end, and lowercased there eight bytes at a time. Its
//! 8-byte words are then counted from the end of the name, which makes them
//! the same words whether a suffix is hashed alone or inside a longer name:
//! `bad.example` has the same last word in `a.b.bad.example`.
//!
//! The hash of a suffix is multilinear over those words, `sum w[k] * key[k]`,
//! with the suffix's partial first word masked to its own bytes, then mixed
//! once by a folded multiply. So every suffix of a name is hashed from one
//! set of word products and a prefix sum: all suffixes in O(length), with no
//! chain of dependent multiplies from one label to the next (the suffix
//! hashes are computed independently, in parallel, by the CPU). The keys are
//! random odd numbers derived from the snapshot's seed, which makes the
//! family universal and keeps anyone who controls feed contents from aiming
//! names at one slot.

/// Longest name accepted, in bytes, without the trailing dot (RFC 1035's 255
/// octets on the wire are 253 characters in presentation form).
pub const MAX_NAME_LEN: usize = 253;

/// Size of the prepared name: the longest name rounded up to whole words.
const BUF_LEN: usize = 256;
const WORDS: usize = BUF_LEN / 8;

const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HI1: u64 = 0x8080_8080_8080_8080;
const DOTS: u64 = 0x2e2e_2e2e_2e2e_2e2e;
const K_FINAL: u64 = 0x9e37_79b9_7f4a_7c15;

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
/// wyhash.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = (a as u128) * (b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The keys of a snapshot's hash function, derived from its seed.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    seed: u64,
    mul: [u64; WORDS],
}

impl Keys {
    pub fn new(seed: u64) -> Keys {
        // splitmix64 stream from the seed; keys odd so no word is ignored.
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let seed = next();
        let mut mul = [0u64; WORDS];
        for m in &mut mul {
            *m = next() | 1;
        }
        Keys { seed, mul }
    }

    /// Final mix of a suffix's sum with its length.
    #[inline(always)]
    fn finish(&self, sum: u64, len: usize) -> u64 {
        fold(sum ^ self.seed, K_FINAL ^ len as u64)
    }
}

/// Mask keeping the last `r` bytes (highest addresses) of a little-endian
/// word; 0 for `r == 0`.
#[inline(always)]
fn tail_mask(r: usize) -> u64 {
    // r <= 7, so the shift is in range; r == 0 gives !u64::MAX == 0.
    !(u64::MAX >> (8 * r))
}

/// A name prepared for lookup: lowercased, as little-endian words counted
/// from its end, held on the stack.
pub(crate) struct Prepared {
    /// `words[WORDS - 1 - k]` is the k-th word from the end, stored as its
    /// little-endian bytes so that the array's memory is the name,
    /// right-aligned and zero-padded on the left, on any host.
    words: [u64; WORDS],
    len: usize,
}

impl Prepared {
    /// An empty name, to be [`set`](Self::set).
    pub fn empty() -> Prepared {
        Prepared {
            words: [0; WORDS],
            len: 0,
        }
    }

    /// Strips one trailing dot and lowercases; `None` for an empty name or one
    /// longer than [`MAX_NAME_LEN`], which cannot be listed.
    #[inline(always)]
    pub fn new(name: &[u8]) -> Option<Prepared> {
        let mut p = Prepared::empty();
        p.set(name).then_some(p)
    }

    /// Replaces the name in place (no 256-byte clear: only the words the new
    /// name covers are ever read, and they are all written here). False, with
    /// the length set to 0, for a name that cannot be listed.
    #[inline(always)]
    pub fn set(&mut self, name: &[u8]) -> bool {
        let name = match name {
            [rest @ .., b'.'] => rest,
            _ => name,
        };
        let len = name.len();
        if len == 0 || len > MAX_NAME_LEN {
            self.len = 0;
            return false;
        }
        let mut end = len;
        let mut k = 0;
        while end >= 8 {
            let mut w = [0u8; 8];
            w.copy_from_slice(&name[end - 8..end]);
            self.words[WORDS - 1 - k] = lower8(u64::from_le_bytes(w)).to_le();
            end -= 8;
            k += 1;
        }
        if end > 0 {
            // The first, partial word: the name's first bytes at the top,
            // zeros below.
            let w = if len >= 8 {
                // Load the name's first eight bytes and shift out the ones
                // already in the next word: no variable-length copy.
                let mut w = [0u8; 8];
                w.copy_from_slice(&name[..8]);
                u64::from_le_bytes(w) << (8 * (8 - end))
            } else {
                name.iter()
                    .fold(0u64, |w, &b| (w >> 8) | ((b as u64) << 56)) // shifts in at the top
            };
            self.words[WORDS - 1 - k] = lower8(w).to_le();
        }
        self.len = len;
        true
    }

    /// The lowercased suffix of `len` bytes (the whole name for `self.len`).
    #[inline(always)]
    pub fn suffix(&self, len: usize) -> &[u8] {
        let bytes: &[u8] = bytemuck::cast_slice(&self.words);
        &bytes[BUF_LEN - len..]
    }

    /// Length of the whole name.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Calls `f(suffix_len, hash)` for every suffix of the name on a label
    /// boundary, the whole name included, shortest first, skipping those
    /// whose number of labels is not in `labels` (bit `c - 1` for `c`
    /// labels, bit 63 for 64 or more): a snapshot whose names all have two
    /// to five labels need not probe for `com`.
    #[inline(always)]
    pub fn for_each_suffix(&self, keys: &Keys, labels: u64, mut f: impl FnMut(usize, u64)) {
        let nwords = self.len.div_ceil(8);
        if nwords > 8 {
            return self.for_each_suffix_long(keys, labels, f);
        }
        // Names up to 64 bytes, nearly all: first one pass over the words for
        // the running sums and a bitmap of the dots (bit m: a dot followed by
        // m bytes), then one loop over the dots. Two loops of data-dependent
        // length, so few mispredicted branches.
        let mut sums = [0u64; 9];
        let mut dots = 0u64;
        for k in 0..nwords {
            let w = u64::from_le(self.words[WORDS - 1 - k]);
            sums[k + 1] = sums[k].wrapping_add(w.wrapping_mul(keys.mul[k]));
            dots |= compress_rev(dot_mask(w)) << (8 * k);
        }
        let mut seen = 0;
        while dots != 0 {
            let m = dots.trailing_zeros() as usize;
            dots &= dots - 1;
            // The suffix after this dot: its last m % 8 bytes in word m / 8,
            // whole words below that; `seen` dots in it, so one label more.
            if m > 0 && wanted(labels, seen + 1) {
                let (k, r) = (m / 8, m % 8);
                let w = u64::from_le(self.words[WORDS - 1 - k]);
                let part = (w & tail_mask(r)).wrapping_mul(keys.mul[k]);
                f(m, keys.finish(sums[k].wrapping_add(part), m));
            }
            seen += 1;
        }
        // The first word is zero-padded, so it can be taken whole.
        if wanted(labels, seen + 1) {
            f(self.len, keys.finish(sums[nwords], self.len));
        }
    }

    /// [`Self::for_each_suffix`] for names over 64 bytes.
    fn for_each_suffix_long(&self, keys: &Keys, labels: u64, mut f: impl FnMut(usize, u64)) {
        let mut acc = 0u64;
        let mut seen = 0;
        for k in 0..self.len.div_ceil(8) {
            let w = u64::from_le(self.words[WORDS - 1 - k]);
            let mul = keys.mul[k];
            let mut dots = compress_rev(dot_mask(w));
            while dots != 0 {
                let r = dots.trailing_zeros() as usize;
                dots &= dots - 1;
                let m = 8 * k + r;
                if m > 0 && wanted(labels, seen + 1) {
                    let part = (w & tail_mask(r)).wrapping_mul(mul);
                    f(m, keys.finish(acc.wrapping_add(part), m));
                }
                seen += 1;
            }
            acc = acc.wrapping_add(w.wrapping_mul(mul));
        }
        if wanted(labels, seen + 1) {
            f(self.len, keys.finish(acc, self.len));
        }
    }

    /// Number of labels of the name (dots plus one).
    pub fn labels(&self) -> usize {
        let mut dots = 0;
        for k in 0..self.len.div_ceil(8) {
            dots += dot_mask(u64::from_le(self.words[WORDS - 1 - k])).count_ones() as usize;
        }
        dots + 1
    }

    /// Hash of the whole name.
    pub fn full_hash(&self, keys: &Keys) -> u64 {
        let mut acc = 0u64;
        for k in 0..self.len.div_ceil(8) {
            let w = u64::from_le(self.words[WORDS - 1 - k]);
            acc = acc.wrapping_add(w.wrapping_mul(keys.mul[k]));
        }
        keys.finish(acc, self.len)
    }
}

/// Gathers bit 7 of each byte (as [`dot_mask`] sets them) into one byte, in
/// reverse: bit 7 - t for byte t, which is the number of bytes after byte t
/// in its word. The multiply moves each bit to its own place in the top
/// byte; all its partial products are distinct powers of two, so no carries.
#[inline(always)]
fn compress_rev(m: u64) -> u64 {
    ((m >> 7).wrapping_mul(0x8040_2010_0804_0201)) >> 56
}

/// The label-count bit of `c` labels in a [`Prepared::for_each_suffix`]
/// mask.
#[inline(always)]
pub(crate) fn label_bit(c: usize) -> u64 {
    1 << (c.clamp(1, 64) - 1)
}

#[inline(always)]
fn wanted(labels: u64, c: usize) -> bool {
    labels & label_bit(c) != 0
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
        p.for_each_suffix(&Keys::new(7), u64::MAX, |m, h| v.push((m, h)));
        v
    }

    #[test]
    fn suffix_hash_equals_hash_of_suffix_alone() {
        let keys = Keys::new(7);
        let name = "a.very-long-label-over-eight.b.bad.example.co.jp";
        let found = suffixes(name);
        for &(m, h) in &found {
            let suffix = &name[name.len() - m..];
            let alone = Prepared::new(suffix.as_bytes()).unwrap();
            assert_eq!(alone.suffix(m), suffix.as_bytes());
            assert_eq!(alone.full_hash(&keys), h, "suffix {suffix}");
        }
        let mut lens: Vec<usize> = found.iter().map(|s| s.0).collect();
        lens.sort();
        assert_eq!(lens, [2, 5, 13, 17, 19, 46, 48]);
    }

    #[test]
    fn every_suffix_of_long_names() {
        let keys = Keys::new(7);
        let name: String = (0..60).map(|i| "x".repeat(i % 9) + ".").collect::<String>() + "z";
        let name = &name[name.len() - MAX_NAME_LEN..];
        let found = suffixes(name);
        assert_eq!(found.len(), name.matches('.').count() + 1);
        for (m, h) in found {
            let s = &name[name.len() - m..];
            assert_eq!(
                Prepared::new(s.as_bytes()).unwrap().full_hash(&keys),
                h,
                "{s}"
            );
        }
    }

    #[test]
    fn short_and_odd_names() {
        let keys = Keys::new(3);
        for name in [
            "a",
            "ab.c",
            "a.",
            ".a",
            "x..y",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "a.bcdefgh.i",
        ] {
            let p = Prepared::new(name.as_bytes()).unwrap_or_else(|| panic!("{name}"));
            let want = name.strip_suffix('.').unwrap_or(name);
            assert_eq!(p.suffix(p.len()), want.as_bytes());
            let mut seen = Vec::new();
            p.for_each_suffix(&keys, u64::MAX, |m, h| {
                let s = &want[want.len() - m..];
                assert_eq!(
                    Prepared::new(s.as_bytes()).unwrap().full_hash(&keys),
                    h,
                    "{name}: {s}"
                );
                seen.push(m);
            });
            seen.sort();
            let mut expect: Vec<usize> = want
                .match_indices('.')
                .map(|(i, _)| want.len() - i - 1)
                .filter(|&m| m > 0)
                .collect();
            expect.push(want.len());
            expect.sort();
            assert_eq!(seen, expect, "{name}");
        }
    }

    #[test]
    fn compress_gathers_dot_bits() {
        let w = u64::from_le_bytes(*b".a.bc..d");
        assert_eq!(compress_rev(dot_mask(w)), 0b1010_0110);
        assert_eq!(compress_rev(0), 0);
        assert_eq!(compress_rev(HI1), 0xff);
    }

    #[test]
    fn label_mask_skips_suffixes() {
        let keys = Keys::new(5);
        let long = "x".repeat(60) + ".a.b.c.d";
        for name in ["a.b.c.d", long.as_str()] {
            let p = Prepared::new(name.as_bytes()).unwrap();
            assert_eq!(p.labels(), name.matches('.').count() + 1);
            let mut got = Vec::new();
            p.for_each_suffix(&keys, label_bit(2) | label_bit(5), |m, _| got.push(m));
            let want: Vec<usize> = [3, name.len()]
                .into_iter()
                .filter(|&m| m == 3 || p.labels() == 5)
                .collect();
            assert_eq!(got, want, "{name}");
            let mut all = Vec::new();
            p.for_each_suffix(&keys, u64::MAX, |m, _| all.push(m));
            assert!(
                all.windows(2).all(|w| w[0] < w[1]),
                "shortest first: {all:?}"
            );
            assert_eq!(all.len(), p.labels());
        }
        assert_eq!(label_bit(1), 1);
        assert_eq!(label_bit(64), 1 << 63);
        assert_eq!(label_bit(200), 1 << 63);
    }

    #[test]
    fn case_and_trailing_dot_do_not_change_hash() {
        let keys = Keys::new(1);
        let a = Prepared::new(b"Bad.EXAMPLE.").unwrap();
        let b = Prepared::new(b"bad.example").unwrap();
        assert_eq!(a.suffix(a.len()), b"bad.example");
        assert_eq!(a.full_hash(&keys), b.full_hash(&keys));
    }

    #[test]
    fn distinct_names_hash_apart() {
        let keys = Keys::new(0);
        let mut seen = std::collections::HashSet::new();
        for name in [
            "ab.c",
            "a.bc",
            "abc",
            "\0abc",
            "example",
            "xample",
            "a.example",
        ] {
            assert!(
                seen.insert(Prepared::new(name.as_bytes()).unwrap().full_hash(&keys)),
                "{name}"
            );
        }
        assert_ne!(
            Prepared::new(b"bad.example")
                .unwrap()
                .full_hash(&Keys::new(1)),
            Prepared::new(b"bad.example")
                .unwrap()
                .full_hash(&Keys::new(2))
        );
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
