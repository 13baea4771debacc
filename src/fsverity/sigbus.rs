//! Memory-mapped image windows that may lose their pages while they are read.
//!
//! The read pass maps regular files (docs/performance.md: reading them into
//! buffers instead costs a copy of every byte on the two cores that hash the
//! tree, and the tree's 2-core bars have margins of a few percent). If another
//! process truncates the image while it is hashed, touching a mapped page past
//! the new end raises SIGBUS, which by default kills imgseal with no message.
//!
//! This module turns that into an ordinary error. A SIGBUS handler, installed
//! once and chained to whatever was installed before (Rust's own stack
//! overflow reporter), looks the faulting address up in a table of the windows
//! being read. For one of them it maps zero-filled anonymous pages over the
//! lost part of the window (`mmap(MAP_FIXED)`) and notes that the window
//! faulted; the interrupted load then completes with zeros, the pass runs to
//! its end, and [`super::pass`] reports "the image changed while it was being
//! read" (exit 7, `io`) instead of any digest. Any other SIGBUS goes to the
//! previous handler, or ends the process as before.
//!
//! The handler runs in the faulting thread, synchronously, so it interrupted
//! hashing code (OpenSSL's or sha2's block functions), never a lock holder in
//! libc. It only reads atomics and makes raw system calls: `mmap` is not on
//! POSIX's async-signal-safe list, but on Linux it is one system call with no
//! user-space state beyond `errno`, which the handler saves and restores. If
//! that `mmap` fails, the handler falls back to `write(2)` of one line and
//! `_exit(7)`, which are on the list.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// Windows watched at once: two per image pass, at most
/// `MAX_CONCURRENT_IMAGES` passes per process; generous.
const SLOTS: usize = 64;

static CLAIMED: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];
/// Start address of a watched window; 0 when the slot is free.
static STARTS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
/// End address (page-rounded) of a watched window.
static ENDS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static FAULTED: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
static INSTALL: Once = Once::new();

/// Written only if the handler cannot map zeros over the lost pages.
const FALLBACK: &[u8] =
    b"imgseal: io: the image changed while it was being read (it was truncated under its memory map)\n";

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: plain libc calls on zero-initialised C structs; the handler
        // is only installed once PREVIOUS holds the disposition it chains to.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE);
            if page > 0 {
                PAGE.store(page as usize, Ordering::Relaxed);
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) != 0 {
                return;
            }
            let _ = PREVIOUS.set(old);
            let mut new: libc::sigaction = std::mem::zeroed();
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) = on_sigbus;
            new.sa_sigaction = handler as usize;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut new.sa_mask);
            libc::sigaction(libc::SIGBUS, &new, std::ptr::null_mut());
        }
    });
}

/// A window registered with the handler; unregistered on drop, which must
/// come before the window is unmapped.
pub(crate) struct Watched {
    slot: usize,
}

impl Watched {
    /// Registers `[ptr, ptr + len)`. `None` if every slot is taken (then a
    /// truncation kills the process as it did before this module).
    pub(crate) fn new(ptr: *const u8, len: usize) -> Option<Watched> {
        install();
        let slot = (0..SLOTS).find(|&i| {
            CLAIMED[i]
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        let page = PAGE.load(Ordering::Relaxed);
        let start = ptr as usize;
        FAULTED[slot].store(false, Ordering::Relaxed);
        ENDS[slot].store((start + len).div_ceil(page) * page, Ordering::Release);
        // Published last: the handler reads STARTS first.
        STARTS[slot].store(start, Ordering::Release);
        Some(Watched { slot })
    }

    /// Whether a page of this window vanished while it was read.
    pub(crate) fn faulted(&self) -> bool {
        FAULTED[self.slot].load(Ordering::Acquire)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        STARTS[self.slot].store(0, Ordering::Release);
        CLAIMED[self.slot].store(false, Ordering::Release);
    }
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    for slot in 0..SLOTS {
        let start = STARTS[slot].load(Ordering::Acquire);
        if start == 0 || addr < start {
            continue;
        }
        let end = ENDS[slot].load(Ordering::Acquire);
        if addr >= end {
            continue;
        }
        let from = addr & !(page - 1);
        // SAFETY: [from, end) lies inside a read-only mapping this process
        // owns and is reading; replacing it with zero pages changes no other
        // memory. errno is saved and restored around the call.
        unsafe {
            let errno = *libc::__errno_location();
            let mapped = libc::mmap(
                from as *mut c_void,
                end - from,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            );
            *libc::__errno_location() = errno;
            if mapped != libc::MAP_FAILED {
                FAULTED[slot].store(true, Ordering::Release);
                return;
            }
            libc::write(2, FALLBACK.as_ptr().cast(), FALLBACK.len());
            libc::_exit(7);
        }
    }
    // Not an image window: whatever handled SIGBUS before us decides.
    if let Some(prev) = PREVIOUS.get() {
        let handler = prev.sa_sigaction;
        if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
            // SAFETY: the previous disposition was installed by this process
            // with this calling convention (SA_SIGINFO says which).
            unsafe {
                if prev.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
                        std::mem::transmute(handler);
                    f(sig, info, uctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
                    f(sig);
                }
            }
            return;
        }
    }
    // The default action: returning re-runs the faulting access, which then
    // ends the process as if this handler had never been installed.
    // SAFETY: sigaction is async-signal-safe.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
    }
}
