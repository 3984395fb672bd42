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
//!
//! Each can be left out of a build, to measure what it saves:
//! `RUSTFLAGS='--cfg pulse_plain="NAME"'` compiles the plain code instead
//! (`scripts/bench/workarounds.sh` builds one binary per NAME and counts).
//! The names: `header_maps`, `drop_glue`, `http2_length`, `id_text`,
//! `pinned_runs`, `page_buffer`, `last_scrapes`, `proc_buffer`,
//! `export_buffer`, `short_copies`.
//!
//! Left where they are, because they are the shape of the code there:
//! `Metrics::gather` collects without the registry's tree of families, the
//! process collector hands its families over without one-family `Vec`s,
//! `executor` runs HTTP/2 streams in their connection's task, and
//! `response::reply` assembles a response from its parts.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, OnceLock};

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
    if cfg!(pulse_plain = "header_maps") {
        return;
    }
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
    if cfg!(pulse_plain = "header_maps") {
        return None;
    }
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
    if map.capacity() == 0 && !cfg!(pulse_plain = "drop_glue") {
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
    if cfg!(pulse_plain = "http2_length") {
        return HeaderValue::from(length);
    }
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
    if cfg!(pulse_plain = "id_text") {
        return Bytes::copy_from_slice(text);
    }
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
    if cfg!(pulse_plain = "pinned_runs") {
        return;
    }
    static PINNED: OnceLock<Vec<HeaderMap>> = OnceLock::new();
    PINNED.get_or_init(|| {
        let maps: Vec<HeaderMap> = (0..PINNED_RESPONSE_MAPS)
            .map(|_| response_header_map())
            .collect();
        maps.into_iter().step_by(8).collect()
    });
}

/// A buffer that comes back when the bytes made of it are dropped: the
/// metrics page, once its response is written. Concurrent users each get a
/// buffer of their own; the largest one is kept.
/// Why: a fresh buffer of a page or more is faulted in page by page as it
/// is written whenever musl has given the last one back to the kernel
/// (docs/performance.md#returned-buffers).
#[derive(Default)]
pub struct ReturnedBuffer(Arc<Mutex<Vec<u8>>>);

impl ReturnedBuffer {
    /// The buffer back from the last user, or a new one; empty either way.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *crate::lock(&self.0))
    }

    /// `bytes` as `Bytes`, without a copy; the buffer comes back here when
    /// the last clone is dropped.
    pub fn share(&self, bytes: Vec<u8>) -> Bytes {
        if cfg!(pulse_plain = "page_buffer") {
            return Bytes::from(bytes);
        }
        Bytes::from_owner(Returning {
            bytes,
            home: Arc::clone(&self.0),
        })
    }
}

struct Returning {
    bytes: Vec<u8>,
    home: Arc<Mutex<Vec<u8>>>,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let Ok(mut home) = self.home.try_lock() {
            if home.capacity() < self.bytes.capacity() {
                self.bytes.clear();
                *home = std::mem::take(&mut self.bytes);
            }
        }
    }
}

/// A body sent once and then reused, as `Bytes` without a copy, and the
/// handle by which [`reclaim`] takes the buffer back: a span export batch.
/// Why: a full batch encodes to about 300 KB, which musl maps and unmaps on
/// every allocation that large, 0.14 page faults per exported span
/// (docs/performance.md#returned-buffers).
pub fn share_for_reuse(encoded: Vec<u8>) -> (Bytes, Arc<Vec<u8>>) {
    let encoded = Arc::new(encoded);
    (Bytes::from_owner(Held(Arc::clone(&encoded))), encoded)
}

/// The buffer of a body that was sent, for the next one: `body` is the
/// last copy once hyper has the answer. Should one still be held (a
/// collector that answered before reading the whole body), the next batch
/// starts a new buffer. Not `Bytes::try_into_mut`: its `BytesMut` into a
/// `Vec` moves the bytes onto themselves, which musl's `memmove` does
/// backwards a byte at a time.
pub fn reclaim(body: Bytes, encoded: Arc<Vec<u8>>) -> Vec<u8> {
    drop(body);
    if cfg!(pulse_plain = "export_buffer") {
        return Vec::new();
    }
    Arc::try_unwrap(encoded).unwrap_or_default()
}

struct Held(Arc<Vec<u8>>);

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The values of the last two scrapes (newer first); the older is dropped
/// only once the next scrape has made its own.
/// Why: with nothing held between scrapes, musl unmapped and mapped the
/// groups of a scrape's blocks on every scrape, four `mmap` and `munmap`
/// pairs, a quarter of its CPU (docs/performance.md#the-last-two-scrapes).
#[derive(Default)]
pub struct LastTwo<T>(Mutex<[T; 2]>);

impl<T: Default> LastTwo<T> {
    /// Keeps `newest`, and drops the oldest.
    pub fn keep(&self, newest: T) {
        if cfg!(pulse_plain = "last_scrapes") {
            return;
        }
        let [newer, older] = &mut *crate::lock(&self.0);
        drop(std::mem::replace(older, std::mem::replace(newer, newest)));
    }

    /// Reads the newest value kept.
    pub fn with_newest<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        read(&crate::lock(&self.0)[0])
    }
}

/// Reads a small `/proc` or cgroup file into a stack buffer, and only a
/// larger one (`/proc/stat` on many cores) on to the heap.
/// Why: a heap buffer of a page or more is a fresh `mmap` and `munmap` on
/// every scrape under musl, and `read_to_string` asks the size first (an
/// `fstat` and an `lseek`; `/proc` says 0) (docs/performance.md#proc-files).
pub fn read_small_file(path: &str) -> Option<String> {
    use std::io::{ErrorKind, Read};
    if cfg!(pulse_plain = "proc_buffer") {
        return std::fs::read_to_string(path).ok();
    }
    let mut file = std::fs::File::open(path).ok()?;
    let mut buffer = [0u8; 2048];
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => return String::from_utf8(buffer[..filled].to_vec()).ok(),
            Ok(read) => filled += read,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let mut bytes = buffer.to_vec();
    file.read_to_end(&mut bytes).ok()?;
    String::from_utf8(bytes).ok()
}

/// Appends a short, variable-length slice in word-sized moves.
/// Why: musl's `memcpy` starts every copy with `rep movs`, and for the
/// dozens of few-byte copies of a log line or a metrics page that setup
/// cost more than the rest of the formatting (docs/performance.md#short-copies).
#[inline(always)]
pub fn put(line: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() > 256 || cfg!(pulse_plain = "short_copies") {
        line.extend_from_slice(bytes);
        return;
    }
    line.reserve(bytes.len());
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word: [u8; 8] = word.try_into().unwrap_or_default();
        line.extend_from_slice(&word);
    }
    let mut rest = words.remainder();
    if let Some((four, tail)) = rest.split_first_chunk::<4>() {
        line.extend_from_slice(four);
        rest = tail;
    }
    if let Some((two, tail)) = rest.split_first_chunk::<2>() {
        line.extend_from_slice(two);
        rest = tail;
    }
    if let Some(&byte) = rest.first() {
        line.push(byte);
    }
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
