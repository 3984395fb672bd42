//! The allocation and memory-layout workarounds, all in one place.
//!
//! The static binary links musl, whose malloc gives a run of equal-sized
//! blocks back to the kernel as soon as every block in it is free. A server
//! that frees and makes one block of a size per request then pays an
//! `mmap`, a `munmap` and page faults every few requests. Each function here
//! keeps such a block alive, or avoids making it, for a measured gain; each
//! says why in one line and links its measurement in `docs/performance.md`.
//! None changes what pulse answers: delete any of them and only the cost
//! changes. A fork that does not build for musl can ignore this module.

use std::cell::{Cell, RefCell};
use std::sync::OnceLock;

use bytes::BytesMut;
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue};

/// Room for the headers of a response over HTTP/2: pulse's five, the
/// `content-length` it sets there ([`http2_content_length`]) and hyper's
/// `date`.
const RESPONSE_HEADERS: usize = 8;

thread_local! {
    /// An emptied request header map, for the next response on this thread.
    static SPARE_HEADERS: Cell<Option<HeaderMap>> = const { Cell::new(None) };
}

/// A new, empty header map with room for a response's headers.
pub fn response_header_map() -> HeaderMap {
    HeaderMap::with_capacity(RESPONSE_HEADERS)
}

/// Puts this thread's spare header map (or a new one) into `headers`.
/// Why: a keep-alive HTTP/1 connection then allocates no header map at all
/// (docs/performance.md#reused-header-maps).
#[inline]
pub fn reuse_response_map(headers: &mut HeaderMap) {
    let spare = SPARE_HEADERS.take().unwrap_or_else(response_header_map);
    dispose(std::mem::replace(headers, spare));
}

/// Empties a request's header map and keeps it for the next response on
/// this thread, if it is large enough; a smaller one is handed back, to be
/// freed with this request's response.
/// Why: freed at once, h2's small request maps emptied a musl run per burst
/// of streams (docs/performance.md#reused-header-maps).
#[inline]
pub fn recycle_headers(mut headers: HeaderMap) -> Option<HeaderMap> {
    headers.clear();
    if headers.capacity() >= RESPONSE_HEADERS {
        SPARE_HEADERS.set(Some(headers));
        None
    } else {
        Some(headers)
    }
}

/// Drops a header map, skipping the drop glue of one that never allocated
/// (what `HeaderMap::new` and `take` leave behind): about 60 instructions
/// of checks that find nothing to free. Checked, not assumed: a map with
/// room is dropped as usual.
#[inline]
pub fn dispose(map: HeaderMap) {
    if map.capacity() == 0 {
        std::mem::forget(map);
    } else {
        drop(map);
    }
}

/// The `content-length` of an HTTP/2 answer of `length` bytes, the last one
/// this thread made cloned when the length repeats.
/// Why: left to hyper, two allocations and two frees per response
/// (docs/performance.md#http2-content-length).
#[inline]
pub fn http2_content_length(length: u64) -> HeaderValue {
    thread_local! {
        static LAST: RefCell<(u64, HeaderValue)> =
            const { RefCell::new((0, HeaderValue::from_static("0"))) };
    }
    LAST.with_borrow_mut(|(last_length, value)| {
        if *last_length != length {
            *last_length = length;
            *value = HeaderValue::from(length);
        }
        value.clone()
    })
}

thread_local! {
    /// What is left of this thread's current block of id text.
    static ID_TEXT_BLOCK: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// SECURITY: a block is freed once every response that took text from it
/// is gone, so a client that stops reading holds up at most one block per
/// response it leaves unread: 1 KiB, less than that response's header map.
pub const ID_TEXT_BLOCK_BYTES: usize = 1024;

/// `text` as shared bytes: in one allocation with the request's header map
/// that [`recycle_headers`] handed back, so that the map is freed with the
/// response's headers; else carved from this thread's block of id text.
#[inline]
pub fn shared_text<const N: usize>(text: &[u8; N], request_headers: Option<HeaderMap>) -> Bytes {
    match request_headers {
        None => carve_id_text(text),
        Some(headers) => Bytes::from_owner(IdText {
            text: *text,
            _request_headers: headers,
        }),
    }
}

/// `text`, copied into this thread's block of id text, as shared bytes.
/// Why: one allocation per block of responses, not one per response, whose
/// lone block of its size musl unmapped (docs/performance.md#id-text-blocks).
/// Generic over the length, so the copy is a few moves, not `memcpy`.
pub fn carve_id_text<const N: usize>(text: &[u8; N]) -> Bytes {
    ID_TEXT_BLOCK.with_borrow_mut(|block| {
        if block.capacity() < N {
            *block = BytesMut::with_capacity(ID_TEXT_BLOCK_BYTES);
        }
        block.extend_from_slice(text);
        block.split().freeze()
    })
}

/// Id text, and the request's header map it keeps until the response's
/// headers are dropped.
struct IdText<const N: usize> {
    text: [u8; N],
    /// Never read; see [`recycle_headers`].
    _request_headers: HeaderMap,
}

impl<const N: usize> AsRef<[u8]> for IdText<N> {
    fn as_ref(&self) -> &[u8] {
        &self.text
    }
}

/// How many HTTP/2 answers in flight at once (on all threads) the pinned
/// runs make room for: 16 connections with 16 streams each.
const PINNED_RESPONSE_MAPS: usize = 256;

/// Makes musl map runs for response header maps and keeps one block of
/// each run (every eighth map) for good, so HTTP/2 bursts never empty them.
/// Why: 0.002 instead of 0.31 page faults per h2c request, for about 340 KiB
/// once HTTP/2 is in use (docs/performance.md#pinned-response-map-runs).
pub fn pin_response_map_runs() {
    static PINNED: OnceLock<Vec<HeaderMap>> = OnceLock::new();
    PINNED.get_or_init(|| {
        let maps: Vec<HeaderMap> = (0..PINNED_RESPONSE_MAPS)
            .map(|_| response_header_map())
            .collect();
        maps.into_iter().step_by(8).collect()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header;

    /// A request's header map comes back empty: reused for the next
    /// response if it has room for one, else handed back to be kept with
    /// this response.
    #[test]
    fn request_header_maps_are_emptied_then_reused_or_kept() {
        let with_headers = |capacity: usize| {
            let mut headers = HeaderMap::with_capacity(capacity);
            headers.insert(header::COOKIE, HeaderValue::from_static("session=secret"));
            headers
        };
        let kept = recycle_headers(with_headers(2)).expect("too small to reuse: handed back");
        assert!(kept.is_empty());
        assert!(recycle_headers(with_headers(RESPONSE_HEADERS)).is_none());
        let mut reused = HeaderMap::new();
        reuse_response_map(&mut reused);
        assert!(reused.is_empty() && reused.capacity() >= RESPONSE_HEADERS);
    }

    /// Id text comes from a shared block: consecutive responses' ids sit
    /// side by side in it, and a full block gives way to a new one.
    #[test]
    fn id_text_is_carved_from_shared_blocks() {
        let ids: Vec<[u8; 87]> = (0..30u8).map(|i| [b'a' + i % 26; 87]).collect();
        let carved: Vec<Bytes> = ids.iter().map(carve_id_text).collect();
        let mut new_blocks = 0;
        for (i, (text, id)) in carved.iter().zip(&ids).enumerate() {
            assert_eq!(text.as_ref(), id.as_slice(), "id {i}");
            if i > 0 && carved[i - 1].as_ptr().wrapping_add(87) != text.as_ptr() {
                new_blocks += 1;
            }
        }
        let per_block = ID_TEXT_BLOCK_BYTES / 87;
        assert!(
            new_blocks <= 30 / per_block + 1,
            "{new_blocks} blocks for 30 ids"
        );
    }

    #[test]
    fn http2_lengths_repeat_without_being_remade() {
        assert_eq!(http2_content_length(14), "14");
        assert_eq!(http2_content_length(14), "14");
        assert_eq!(http2_content_length(2), "2");
    }
}
