//! SQLite's memory on mimalloc (the `mimalloc` feature, which the `kanki`
//! binary turns on as it uses mimalloc for everything else).
//!
//! SQLite allocates through its own `sqlite3_mem_methods`, by default glibc's
//! `malloc`, outside Rust's global allocator. A million-row import spent a
//! tenth of its time in glibc's `malloc` and `free` for SQLite's page cache
//! and statements; on mimalloc that shrinks and import speeds up.

use std::ffi::{c_int, c_void};
use std::sync::Once;

use libmimalloc_sys as mi;
use rusqlite::ffi;

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    // SAFETY: mimalloc's malloc accepts any size; SQLite never asks for a
    // negative one (it checks before calling).
    unsafe { mi::mi_malloc(n.max(0) as usize) }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    // SAFETY: SQLite frees only what x_malloc/x_realloc returned.
    unsafe { mi::mi_free(p) }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: as for x_free; a positive size (SQLite's contract).
    unsafe { mi::mi_realloc(p, n.max(0) as usize) }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    // SAFETY: `p` came from mimalloc (see x_free). SQLite's allocations
    // stay far under 2 GiB (its own limit is below that).
    unsafe { mi::mi_usable_size(p) as c_int }
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    // SAFETY: a pure function of its argument.
    unsafe { mi::mi_good_size(n.max(0) as usize) as c_int }
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// Routes SQLite's allocations to mimalloc. Must run before SQLite
/// initializes, so [`super::SqliteBackend::open`] calls it first; later
/// calls do nothing. If SQLite was initialized already (by another library
/// in the process), SQLite refuses and keeps its allocator, which is only
/// slower.
pub(super) fn use_mimalloc() {
    static ONCE: Once = Once::new();
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(x_malloc),
        xFree: Some(x_free),
        xRealloc: Some(x_realloc),
        xSize: Some(x_size),
        xRoundup: Some(x_roundup),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        pAppData: std::ptr::null_mut(),
    };
    ONCE.call_once(|| {
        // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to a
        // sqlite3_mem_methods, which SQLite copies before returning. Called
        // before this crate opens any connection.
        let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const _) };
        if rc != ffi::SQLITE_OK {
            tracing::debug!(rc, "SQLite keeps its default allocator");
        }
        // Without memory statistics SQLite takes no global mutex around
        // every allocation (kanki never reads them).
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int; same timing as above.
        unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int) };
    });
}
