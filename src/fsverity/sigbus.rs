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
//! previous handler, or ends the process as before. The table is a seqlock
//! per slot, so the handler never combines the start of one window with the
//! end of another that took the slot meanwhile: the zero pages it maps stay
//! inside one window.
//!
//! The handler runs in the faulting thread, synchronously, so it interrupted
//! hashing code (OpenSSL's or sha2's block functions), never a lock holder in
//! libc. It only reads atomics and makes raw system calls: `mmap` is not on
//! POSIX's async-signal-safe list, but on Linux it is one system call with no
//! user-space state beyond `errno`, which the handler saves and restores. If
//! that `mmap` fails, the handler falls back to `write(2)` of one line and
//! `_exit(7)`, which are on the list.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Once, OnceLock};

/// Windows watched at once: two per image pass, at most
/// `MAX_CONCURRENT_IMAGES` passes per process; generous.
const SLOTS: usize = 64;

static CLAIMED: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];
/// A sequence count per slot (a seqlock): odd while the slot's owner changes
/// its start and end, even otherwise. The handler takes a slot's window only
/// when the count is even and the same before and after it read both, so it
/// never pairs one window's start with another's end (the slot can be freed
/// and taken again by another thread between its two loads). A slot has one
/// writer at a time, the thread that holds its `CLAIMED` flag.
static SEQ: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
/// Start address of a watched window; 0 when the slot is free.
static STARTS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
/// End address (page-rounded) of a watched window; 0 when the slot is free.
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
        publish(slot, start, (start + len).div_ceil(page) * page);
        Some(Watched { slot })
    }

    /// Whether a page of this window vanished while it was read.
    pub(crate) fn faulted(&self) -> bool {
        FAULTED[self.slot].load(Ordering::Acquire)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        publish(self.slot, 0, 0);
        CLAIMED[self.slot].store(false, Ordering::Release);
    }
}

/// Sets `slot`'s window to `[start, end)` (`0, 0`: none), as a seqlock
/// writer. Only the thread holding the slot's `CLAIMED` flag calls it.
fn publish(slot: usize, start: usize, end: usize) {
    let seq = SEQ[slot].load(Ordering::Relaxed);
    SEQ[slot].store(seq.wrapping_add(1), Ordering::Relaxed);
    // The odd count is visible before either address changes.
    fence(Ordering::Release);
    STARTS[slot].store(start, Ordering::Relaxed);
    ENDS[slot].store(end, Ordering::Relaxed);
    // Both addresses are visible before the even count.
    SEQ[slot].store(seq.wrapping_add(2), Ordering::Release);
}

/// `slot`'s window, read as a seqlock reader: `None` if the slot is free, or
/// was being changed or changed while it was read (then it is not the
/// window of the faulting access, which stays registered until the thread
/// that faulted has finished reading it). Never waits: the writer may be the
/// very thread the handler interrupted. `between` runs between the loads of
/// the start and the end (tests use it to change the slot there).
#[inline(always)]
fn snapshot(slot: usize, between: impl FnOnce()) -> Option<(usize, usize)> {
    let before = SEQ[slot].load(Ordering::Acquire);
    if before & 1 != 0 {
        return None;
    }
    let start = STARTS[slot].load(Ordering::Relaxed);
    between();
    let end = ENDS[slot].load(Ordering::Relaxed);
    // Both loads complete before the count is read again.
    fence(Ordering::Acquire);
    let after = SEQ[slot].load(Ordering::Relaxed);
    (after == before && start != 0 && start < end).then_some((start, end))
}

/// The watched window holding `addr`, from one consistent read of one slot:
/// its slot and the page-aligned part of it from `addr`'s page to its end.
fn window_at(addr: usize) -> Option<(usize, usize, usize)> {
    let page = PAGE.load(Ordering::Relaxed);
    (0..SLOTS).find_map(|slot| {
        let (start, end) = snapshot(slot, || ())?;
        // `start` is a mapping's first byte, `end` its page-rounded end; the
        // page of `addr` starts no lower than the page of `start`, which the
        // mapping covers.
        (start..end)
            .contains(&addr)
            .then_some((slot, addr & !(page - 1), end))
    })
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for an SA_SIGINFO handler.
    // si_addr is only an address when the kernel raised the signal for a
    // fault (si_code > 0); for kill(2), sigqueue(3) and tgkill(2) that part
    // of the union holds the sender's pid and uid.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let fault = code > 0;
    if let Some((slot, from, end)) = if fault { window_at(addr) } else { None } {
        // SAFETY: [from, end) lies inside one watched window, a read-only
        // mapping this process owns and is reading (its slot was consistent:
        // start and end of the same window); replacing it with zero pages
        // changes no other memory. errno is saved and restored around the
        // call.
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
    // The default action, which ends the process (with a core dump) as if
    // this handler had never been installed. Resetting it for good is right:
    // the process is about to end. For a fault, returning re-runs the
    // faulting access, which raises SIGBUS again, now with the default
    // action. A SIGBUS sent by another process or by raise(3) is not
    // re-sent by returning, so it is raised again here: SIGBUS is blocked
    // while this handler runs, and it is delivered, and ends the process,
    // as the handler returns.
    // SAFETY: sigaction and raise are async-signal-safe.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
        if !fault {
            libc::raise(libc::SIGBUS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window at the address of a live buffer (never read through the
    /// table: only its addresses matter).
    fn watch(buf: &[u8]) -> Watched {
        Watched::new(buf.as_ptr(), buf.len()).expect("a free slot")
    }

    #[test]
    fn a_registered_window_is_found_until_it_is_dropped() {
        let buf = vec![0u8; 3 * 4096];
        let w = watch(&buf);
        let start = buf.as_ptr() as usize;
        let (slot, from, end) = window_at(start + 5000).expect("inside the window");
        assert_eq!(slot, w.slot);
        assert_eq!(from, (start + 5000) & !(PAGE.load(Ordering::Relaxed) - 1));
        assert!(end >= start + buf.len() && from >= start & !4095);
        assert_eq!(snapshot(w.slot, || ()), Some((start, end)));
        drop(w);
        assert!(window_at(start + 5000).is_none_or(|(s, ..)| s != slot));
    }

    /// Review finding: the handler read a slot's start and end separately,
    /// so a slot freed and taken by another window between the two loads
    /// paired the old start with the new end, and zero pages were mapped
    /// over memory that was no window.
    #[test]
    fn a_slot_changed_between_its_two_loads_is_not_taken() {
        let first = vec![0u8; 4096];
        let second = vec![0u8; 64 * 4096];
        let w = watch(&first);
        let page = PAGE.load(Ordering::Relaxed);
        let (a, b) = (first.as_ptr() as usize, second.as_ptr() as usize);
        let seen = snapshot(w.slot, || {
            publish(w.slot, b, (b + second.len()).div_ceil(page) * page)
        });
        assert_eq!(seen, None, "a torn read of the slot was accepted");
        // Read again, the slot is the second window, whole.
        let (start, end) = snapshot(w.slot, || ()).unwrap();
        assert_eq!(start, b);
        assert!(end >= b + second.len());
        // A slot whose writer is midway (odd count) is skipped, not waited on.
        SEQ[w.slot].fetch_add(1, Ordering::Relaxed);
        assert_eq!(snapshot(w.slot, || ()), None);
        SEQ[w.slot].fetch_add(1, Ordering::Relaxed);
        publish(w.slot, a, a + page);
    }
}
