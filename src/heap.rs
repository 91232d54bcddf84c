//! The router module's heap: free lists of small blocks in front of a
//! general allocator (talc in the module).
//!
//! Decoding an event, routing and encoding the reply allocate a few dozen
//! small blocks per request and free them soon after. Blocks of up to 1 KiB
//! come from a free list per size class (16, 32, ... 1024 bytes), filled
//! from the backing allocator and never given back, so taking or returning
//! one is a few instructions instead of a search of the allocator's bins.
//! The peak use of each class stays reserved for reuse, which for a router's
//! per-request strings and vectors is small. Larger blocks, and blocks
//! aligned beyond 16 bytes, go to the backing allocator directly.
//!
//! It is not thread-safe: the module is built without atomics, so it has
//! one thread, which is what lets it be the global allocator there.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;

/// How many size classes: 16 << 0 ... 16 << 6 bytes.
const CLASSES: usize = 7;
const MIN_SHIFT: u32 = 4;
const MAX_SMALL: usize = 1 << (MIN_SHIFT as usize + CLASSES - 1);
const SMALL_ALIGN: usize = 16;

/// Small blocks from free lists, the rest from `A`.
pub struct Heap<A> {
    backing: A,
    /// Per class, the first free block; each free block holds the next.
    free: UnsafeCell<[*mut u8; CLASSES]>,
}

// SAFETY: a module built without atomics has one thread, so the free lists
// are never touched concurrently.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl<A: Sync> Sync for Heap<A> {}

impl<A> Heap<A> {
    /// Free lists in front of `backing`.
    pub const fn new(backing: A) -> Self {
        Self { backing, free: UnsafeCell::new([std::ptr::null_mut(); CLASSES]) }
    }
}

/// The size class of a block, if it is small.
fn class(layout: Layout) -> Option<usize> {
    if layout.size() > MAX_SMALL || layout.align() > SMALL_ALIGN {
        return None;
    }
    let size = layout.size().max(1 << MIN_SHIFT);
    Some((usize::BITS - (size - 1).leading_zeros() - MIN_SHIFT) as usize)
}

/// The layout every block of a class is taken from the backing allocator with.
fn class_layout(class: usize) -> Layout {
    // SAFETY: a power of two of at most MAX_SMALL bytes, aligned to 16, which divides it.
    unsafe { Layout::from_size_align_unchecked(1 << (class as u32 + MIN_SHIFT), SMALL_ALIGN) }
}

// SAFETY: small blocks are whole blocks of their class, at least as large
// and as aligned as asked; a freed one is reused only for its own class.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Heap<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            // SAFETY: the caller's layout, passed on.
            return unsafe { self.backing.alloc(layout) };
        };
        // SAFETY: one thread, and no other reference to the lists exists during this call.
        let free = unsafe { &mut *self.free.get() };
        let head = free[c];
        if head.is_null() {
            // SAFETY: a valid layout of non-zero size.
            return unsafe { self.backing.alloc(class_layout(c)) };
        }
        // SAFETY: a free block of class `c` holds the next free block's address.
        free[c] = unsafe { head.cast::<*mut u8>().read() };
        head
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            // SAFETY: allocated by the backing allocator with this layout, as the caller promises.
            return unsafe { self.backing.dealloc(ptr, layout) };
        };
        // SAFETY: one thread; `ptr` is a block of class `c` (at least 16
        // bytes, 16-aligned) its owner gave up, so it may hold the link.
        unsafe {
            let free = &mut *self.free.get();
            ptr.cast::<*mut u8>().write(free[c]);
            free[c] = ptr;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller promises `new_size` is valid for `layout`'s alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            (Some(old), Some(new)) if old == new => ptr,
            // SAFETY: both large: the backing allocator's block, resized by it.
            (None, None) => unsafe { self.backing.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: a fresh block for the new layout; the old contents
                // copied up to the smaller size; then the old block freed.
                unsafe {
                    let fresh = self.alloc(new_layout);
                    if !fresh.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    fresh
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::System;

    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("layout")
    }

    #[test]
    fn sizes_fall_in_the_smallest_class_that_holds_them() {
        let classes: Vec<_> = [1, 16, 17, 32, 33, 1000, 1024].iter().map(|&s| class(layout(s, 1))).collect();
        assert_eq!(classes, [Some(0), Some(0), Some(1), Some(1), Some(2), Some(6), Some(6)]);
        assert_eq!(class(layout(1025, 1)), None, "large blocks go to the backing allocator");
        assert_eq!(class(layout(64, 32)), None, "so do blocks aligned beyond 16");
    }

    #[test]
    fn a_freed_small_block_is_reused_for_its_class_only() {
        let heap = Heap::new(System);
        // SAFETY: every block is used within its layout and freed once with it.
        unsafe {
            let a = heap.alloc(layout(24, 8));
            assert!(!a.is_null() && (a as usize).is_multiple_of(SMALL_ALIGN));
            heap.dealloc(a, layout(24, 8));
            let other = heap.alloc(layout(100, 8));
            assert_ne!(other, a, "a 128-byte block must not reuse a 32-byte one");
            let again = heap.alloc(layout(30, 1));
            assert_eq!(again, a, "the free 32-byte block is taken again");
            heap.dealloc(again, layout(30, 1));
            heap.dealloc(other, layout(100, 8));
        }
    }

    #[test]
    fn realloc_keeps_the_contents_across_classes_and_sizes() {
        let heap = Heap::new(System);
        // SAFETY: each pointer is the live block of the layout it is used with.
        unsafe {
            let mut size = 5;
            let mut p = heap.alloc(layout(size, 1));
            for (i, b) in (0..size).zip(1u8..) {
                p.add(i).write(b);
            }
            // Within a class, across classes, into and out of the large sizes.
            for next in [12, 40, 700, 5000, 9000, 300, 3] {
                p = heap.realloc(p, layout(size, 1), next);
                assert!(!p.is_null());
                let kept = size.min(next).min(5);
                let got: Vec<u8> = (0..kept).map(|i| p.add(i).read()).collect();
                assert_eq!(got, (1..=kept as u8).collect::<Vec<_>>(), "after growing {size} → {next}");
                size = next;
            }
            heap.dealloc(p, layout(size, 1));
        }
    }
}
