//! Huge pages for the snapshot's two arrays.
//!
//! A lookup touches a random table slot and a random record in arrays of
//! tens of megabytes. With 4 KiB pages nearly every one of those accesses
//! also misses the TLB, and the page walk is one more trip to memory before
//! the real one. Backed by 2 MiB pages, the whole snapshot needs a few dozen
//! TLB entries. Measured on the 1M-name benchmark, single lookups ran about
//! a third faster.
//!
//! Best effort: where transparent huge pages are off, or on other systems,
//! this does nothing and lookups are only slower.

/// Size of a transparent huge page on x86_64 and aarch64 Linux.
#[cfg(target_os = "linux")]
const HUGE: usize = 2 << 20;

/// Asks the kernel to back `words` with huge pages. `populated`: the memory
/// has been written already, so also collapse it now (`MADV_COLLAPSE`,
/// Linux 6.1) instead of waiting for `khugepaged`; otherwise only mark it,
/// so that the first writes fault huge pages in directly.
pub(crate) fn use_huge_pages(words: &[u64], populated: bool) {
    #[cfg(target_os = "linux")]
    {
        // Only whole huge pages inside the array: madvise never touches
        // memory outside it (which belongs to someone else).
        let start = words.as_ptr() as usize;
        let end = start + std::mem::size_of_val(words);
        let first = start.next_multiple_of(HUGE);
        let last = end / HUGE * HUGE;
        if last <= first {
            return;
        }
        let (ptr, len) = (first as *mut libc::c_void, last - first);
        // SAFETY: the range lies inside the live allocation of `words` and
        // is page-aligned; both advices change only how the kernel backs it,
        // never its contents. Errors (THP disabled, an older kernel) are
        // ignored on purpose: this is an optimization.
        unsafe {
            libc::madvise(ptr, len, libc::MADV_HUGEPAGE);
            if populated {
                libc::madvise(ptr, len, libc::MADV_COLLAPSE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (words, populated);
}
