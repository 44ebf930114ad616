//! An SA's key as it is stored ([`SaKey`]: the raw AES key, 16 or 32 bytes) and the worker's
//! cache of expanded key schedules ([`KeyCache`]).
//!
//! An expanded AES-GCM key is large: ring's `LessSafeKey` is 544 bytes for AES-128 and
//! AES-256 alike (a 15-round key schedule and a 16-entry GHASH table), RustCrypto's 496 / 624,
//! intel-ipsec-mb's 1,024 (48 GHASH powers for its VAES path). Stored in every SA, the two
//! ring schedules of an SA pair alone are 1,088 bytes, more than the rest of
//! the pair's state, and at a million SAs in random order a packet reads its schedule's nine
//! cache lines from memory. So an SA keeps only its raw key, in memory espada owns and wipes
//! (on the control thread, which drops removed SAs), and each worker keeps the schedules of the
//! SAs it is busy with in a [`KeyCache`]: 2-way set-associative, indexed by the key's id (its
//! Gray code), built in place on a miss, never allocating. With no more active SAs than the
//! cache has lines, every packet after an SA's first finds its schedule; beyond that, a miss
//! rebuilds it from the raw key, which measured cheaper than reading a stored schedule from memory at a million SAs
//! (docs/performance.md, "Key schedules").
//!
//! **Thrashing.** Building a schedule into its line writes up to eighteen memory cache lines
//! the worker has not touched for long: each a miss to memory before the write. When the
//! cache thrashes (more misses than hits in the last [`WINDOW`] lookups: traffic spread over
//! far more SAs than it has lines), a miss is built instead into one scratch line that stays
//! in the CPU's cache, and only one miss in [`ADMIT_EVERY`] takes a line of the cache, so
//! that SAs busier than the rest still get in and stop missing (and once they do, the cache
//! stops thrashing). Measured: +18 % decrypting with a million SAs (docs/performance.md).
//!
//! An SA's id is drawn once from a process-wide counter and never reused, so a stale line (its
//! SA removed, a new SA using the same slot) never matches. A worker wipes the line of an SA it
//! lets go of ([`KeyCache::wipe`]): RustCrypto's and intel-ipsec-mb's schedules zeroize
//! themselves on drop; ring offers
//! no way to wipe its schedule, so the line is overwritten in place by the schedule of the
//! all-zero key (copies ring makes on the stack while building a schedule are not reached).

use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroize;

use crate::aead::{AeadEngine, Backend, BadKeyLength};

/// Lines a worker's [`KeyCache`] has unless told otherwise: 16,384 (8,192 sets of 2), 18 MiB
/// (1,152 bytes a line: the largest schedule, intel-ipsec-mb's, aligned to 64) — the
/// schedules of 8,192 busy SA pairs.
pub const DEFAULT_CACHE_LINES: usize = 16_384;

/// Lookups per window of the thrashing test ([`KeyCache`], module documentation).
pub const WINDOW: u32 = 1024;
/// While the cache thrashes, one miss in this many is built into a line of the cache, the
/// others into the scratch line.
pub const ADMIT_EVERY: u32 = 8;

/// Ids of [`SaKey`]s; 0 marks an empty cache line.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The raw AES key of one SA direction (without the salt), wiped when dropped. `Debug` shows
/// the key length and backend only.
pub struct SaKey {
    id: u64,
    bytes: [u8; 32],
    len: u8,
    backend: Backend,
}

impl SaKey {
    /// Copies a 16- or 32-byte AES key (AES-128 or AES-256; both backends build a schedule
    /// for any key of these lengths, so a worker's rebuild is never refused for the key).
    pub fn new(key: &[u8], backend: Backend) -> Result<SaKey, BadKeyLength> {
        if key.len() != 16 && key.len() != 32 {
            return Err(BadKeyLength(key.len()));
        }
        let mut bytes = [0u8; 32];
        bytes[..key.len()].copy_from_slice(key);
        Ok(SaKey {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            bytes,
            len: key.len() as u8,
            backend,
        })
    }
    /// The backend its schedule is built with.
    pub fn backend(&self) -> Backend {
        self.backend
    }
    /// Key length in bytes (16 or 32).
    pub fn key_len(&self) -> usize {
        usize::from(self.len)
    }
    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.key_len()]
    }
}

impl Drop for SaKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for SaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SaKey(AES-{}, {:?}, key redacted)",
            self.key_len() * 8,
            self.backend
        )
    }
}

/// One cache line: a schedule, or none.
type Line = Option<AeadEngine>;

/// A line holds the largest schedule inline (intel-ipsec-mb's, 1,024 bytes aligned to 64:
/// round keys and 48 GHASH powers for its VAES path).
const _: () = assert!(size_of::<Line>() <= 1152);

/// Two lines, the ids of their keys side by side (0: empty) so that finding a key reads one
/// memory cache line, and which line was used last.
#[repr(C)]
struct Set {
    ids: [u64; 2],
    last: u8,
    lines: [Line; 2],
}

/// Hits and misses of a [`KeyCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyCacheStats {
    /// Packets whose key schedule was in the cache.
    pub hits: u64,
    /// Packets whose key schedule was built from the raw key (first packet of an SA on this
    /// worker, or its line taken by busier SAs since).
    pub misses: u64,
    /// Of the misses, those built into the scratch line while the cache thrashed.
    pub bypassed: u64,
}

/// A worker's expanded key schedules, built on the control thread with all lines empty and
/// owned by the worker afterwards (see the module documentation).
pub struct KeyCache {
    sets: Box<[Set]>,
    stats: KeyCacheStats,
    /// The last schedule built outside the sets while thrashing, and its key's id (0: none).
    scratch: (u64, Line),
    /// Lookups and misses so far in the current window.
    window: (u32, u32),
    /// The last complete window had more misses than hits.
    thrashing: bool,
    /// Misses built into the scratch line since the last one admitted to the cache.
    skipped: u32,
}

impl KeyCache {
    /// A cache of at least `lines` lines (rounded up to a power of two, at least 2).
    pub fn new(lines: usize) -> KeyCache {
        let sets = lines.max(2).next_power_of_two() / 2;
        KeyCache {
            sets: (0..sets)
                .map(|_| Set {
                    ids: [0; 2],
                    last: 0,
                    lines: [None, None],
                })
                .collect(),
            stats: KeyCacheStats::default(),
            scratch: (0, None),
            window: (0, 0),
            thrashing: false,
            skipped: 0,
        }
    }

    /// Lines in the cache.
    pub fn lines(&self) -> usize {
        self.sets.len() * 2
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> KeyCacheStats {
        self.stats
    }

    /// The set of `key`: the low bits of its id's Gray code, `id ^ (id >> 1)`, a bijection
    /// that spreads ids over the sets both when a worker's busy keys have consecutive ids and
    /// when they have every other id (the inbound keys of SA pairs made one after the other,
    /// when only they are busy): the low bits of the id alone put those in half the sets.
    fn set_index(&self, key: &SaKey) -> usize {
        set_of(key.id, self.sets.len())
    }

    /// The schedule of `key`: found, or built in place of the set's less recently used line
    /// (or, while the cache thrashes, mostly in the scratch line). `None` only if the backend
    /// refused to build it, which the key lengths [`SaKey::new`] accepts rule out. A hit is
    /// inlined into the packet path; the rest is [`KeyCache::not_in_set`].
    #[inline(always)]
    pub fn engine(&mut self, key: &SaKey) -> Option<&AeadEngine> {
        let i = self.set_index(key);
        let Some(way) = self.sets[i].way_of(key.id) else {
            return self.not_in_set(i, key);
        };
        self.tick(false);
        self.stats.hits += 1;
        let set = &mut self.sets[i];
        set.last = way as u8;
        set.lines[way].as_ref()
    }

    /// [`KeyCache::engine`] of a key not in its set `i`: the scratch line, or built.
    #[inline(never)]
    fn not_in_set(&mut self, i: usize, key: &SaKey) -> Option<&AeadEngine> {
        let scratch_hit = self.scratch.0 == key.id;
        self.tick(!scratch_hit);
        if scratch_hit {
            self.stats.hits += 1;
            return self.scratch.1.as_ref();
        }
        self.stats.misses += 1;
        if self.thrashing && self.skipped + 1 < ADMIT_EVERY {
            self.skipped += 1;
            self.stats.bypassed += 1;
            let (id, line) = &mut self.scratch;
            return build(id, line, key);
        }
        self.skipped = 0;
        let set = &mut self.sets[i];
        let way = usize::from(1 - set.last);
        set.last = way as u8;
        build(&mut set.ids[way], &mut set.lines[way], key)
    }

    /// Calls `f` with an address in each cache line of `key`'s schedule that a short packet
    /// reads ([`AeadEngine::short_packet_lines`]), if the schedule is in its set: a packet loop
    /// prefetches them a few packets ahead, after [`KeyCache::set_ids`].
    #[inline]
    pub fn short_packet_lines(&self, key: &SaKey, f: impl FnMut(*const u8)) {
        let set = &self.sets[self.set_index(key)];
        if let Some(e) = set.way_of(key.id).and_then(|way| set.lines[way].as_ref()) {
            e.short_packet_lines(f);
        }
    }

    /// Counts a lookup (`miss`: built from the raw key) in the thrashing window.
    #[inline]
    fn tick(&mut self, miss: bool) {
        self.window.0 += 1;
        self.window.1 += u32::from(miss);
        if self.window.0 == WINDOW {
            self.thrashing = self.window.1 > WINDOW / 2;
            self.window = (0, 0);
        }
    }

    /// Where the ids of `key`'s set are: a packet loop prefetches that memory cache line a few
    /// packets ahead.
    #[inline]
    pub fn set_ids(&self, key: &SaKey) -> *const u8 {
        std::ptr::from_ref(&self.sets[self.set_index(key)].ids).cast()
    }

    /// Forgets and wipes the schedule of `key`, if cached: the worker lets go of its SA.
    pub fn wipe(&mut self, key: &SaKey) {
        let i = self.set_index(key);
        self.sets[i].wipe(|id| id == key.id);
        if self.scratch.0 == key.id {
            self.scratch.0 = 0;
            wipe_line(&mut self.scratch.1);
        }
    }
}

/// Builds `key`'s schedule into `line` over what it held ([`AeadEngine::rebuild`]:
/// intel-ipsec-mb's in place after zeroizing the old one, RustCrypto's old schedule zeroizes
/// on drop, ring's is overwritten in place), `id` the key's id once it is there.
#[inline]
fn build<'a>(id: &mut u64, line: &'a mut Line, key: &SaKey) -> Option<&'a AeadEngine> {
    *id = 0;
    AeadEngine::rebuild(line, key.backend, key.bytes());
    if line.is_some() {
        *id = key.id;
    }
    line.as_ref()
}

/// The set of the key `id` among `sets` (a power of two): [`KeyCache`]'s `set_index`.
#[inline(always)]
fn set_of(id: u64, sets: usize) -> usize {
    (id ^ (id >> 1)) as usize & (sets - 1)
}

/// Empties a line. RustCrypto's and intel-ipsec-mb's schedules zeroize on drop; ring's is
/// overwritten by the schedule of the all-zero key.
fn wipe_line(line: &mut Line) {
    let ring = matches!(line, Some(AeadEngine::Ring(_)));
    *line = None;
    if ring {
        *line = AeadEngine::new(Backend::Ring, &[0u8; 16]).ok();
    }
}

impl Set {
    /// The way holding the key `id`, if either does.
    #[inline(always)]
    fn way_of(&self, id: u64) -> Option<usize> {
        match (self.ids[0] == id, self.ids[1] == id) {
            (true, _) => Some(0),
            (_, true) => Some(1),
            _ => None,
        }
    }

    /// Empties the lines whose id passes `which` ([`wipe_line`]).
    fn wipe(&mut self, which: impl Fn(u64) -> bool) {
        for way in 0..2 {
            if which(self.ids[way]) {
                self.ids[way] = 0;
                wipe_line(&mut self.lines[way]);
            }
        }
    }
}

impl Drop for KeyCache {
    /// Wipes every line (the worker's cache is dropped when the data plane stops).
    fn drop(&mut self) {
        for set in self.sets.iter_mut() {
            set.wipe(|id| id != 0);
        }
        wipe_line(&mut self.scratch.1);
    }
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("lines", &self.lines())
            .field("stats", &self.stats)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aead::GcmAead;

    fn seal_with(cache: &mut KeyCache, key: &SaKey) -> [u8; 16] {
        let mut buf = [0u8; 32];
        cache
            .engine(key)
            .unwrap()
            .seal(&[1; 12], b"aad", &mut buf)
            .unwrap()
    }

    #[test]
    fn a_cached_schedule_is_the_schedule_of_its_own_key() {
        for backend in Backend::ALL {
            for len in [16, 32] {
                let raw: Vec<u8> = (0..len as u8).collect();
                let key = SaKey::new(&raw, backend).unwrap();
                let direct = AeadEngine::new(backend, &raw).unwrap();
                let mut buf = [0u8; 32];
                let want = direct.seal(&[1; 12], b"aad", &mut buf).unwrap();
                let mut cache = KeyCache::new(4);
                assert_eq!(seal_with(&mut cache, &key), want, "{backend:?} miss");
                assert_eq!(seal_with(&mut cache, &key), want, "{backend:?} hit");
                assert_eq!(
                    cache.stats(),
                    KeyCacheStats {
                        hits: 1,
                        misses: 1,
                        bypassed: 0
                    }
                );
            }
        }
    }

    #[test]
    fn consecutive_ids_and_every_other_id_fill_every_set_twice() {
        // 2 ways a set: as many keys as lines fit without an eviction when each set gets two.
        // By the id's low bits, every other id would leave half the sets empty.
        for sets in [1usize, 2, 64, 8192] {
            for start in [1u64, 2, 12_345, 1 << 40] {
                for stride in [1u64, 2] {
                    let mut load = vec![0u32; sets];
                    for k in 0..2 * sets as u64 {
                        load[set_of(start + stride * k, sets)] += 1;
                    }
                    assert!(
                        load.iter().all(|&n| n == 2),
                        "sets {sets}, ids {start} + {stride}k"
                    );
                }
            }
        }
    }

    #[test]
    fn a_schedule_rebuilt_over_another_seals_as_a_fresh_one() {
        // One set: five keys of both lengths in turn, each miss built over the line of
        // another key (intel-ipsec-mb's in place, across lengths too).
        for backend in Backend::ALL {
            let keys: Vec<SaKey> = (0..5u8)
                .map(|i| {
                    let len = if i % 2 == 0 { 16 } else { 32 };
                    SaKey::new(&vec![i + 1; len], backend).unwrap()
                })
                .collect();
            let want: Vec<[u8; 16]> = keys
                .iter()
                .map(|k| {
                    let direct = AeadEngine::new(backend, k.bytes()).unwrap();
                    direct.seal(&[1; 12], b"aad", &mut [0u8; 32]).unwrap()
                })
                .collect();
            let mut cache = KeyCache::new(2);
            for round in 0..3 {
                for (k, w) in keys.iter().zip(&want) {
                    assert_eq!(seal_with(&mut cache, k), *w, "{backend:?} round {round}");
                }
            }
            assert_eq!(cache.stats().misses, 15, "{backend:?}");
        }
    }

    #[test]
    fn keys_beyond_the_lines_evict_the_least_recently_used_and_stay_correct() {
        // A 2-line cache (one set): three keys in turn always miss, two never after the first.
        let keys: Vec<SaKey> = (0..3u8)
            .map(|i| SaKey::new(&[i; 16], Backend::Ring).unwrap())
            .collect();
        let want: Vec<[u8; 16]> = keys
            .iter()
            .map(|k| seal_with(&mut KeyCache::new(2), k))
            .collect();
        let mut cache = KeyCache::new(2);
        for round in 0..3 {
            for (k, w) in keys.iter().zip(&want) {
                assert_eq!(seal_with(&mut cache, k), *w, "round {round}");
            }
        }
        assert_eq!(
            cache.stats(),
            KeyCacheStats {
                hits: 0,
                misses: 9,
                bypassed: 0
            }
        );
        let mut cache = KeyCache::new(2);
        for _ in 0..3 {
            for (k, w) in keys[..2].iter().zip(&want) {
                assert_eq!(seal_with(&mut cache, k), *w);
            }
        }
        assert_eq!(
            cache.stats(),
            KeyCacheStats {
                hits: 4,
                misses: 2,
                bypassed: 0
            }
        );
    }

    /// Lookups of `keys[i]` for each `i` of `order`, each checked against the schedule built
    /// directly from the key.
    fn run(
        cache: &mut KeyCache,
        keys: &[SaKey],
        raw: &[[u8; 16]],
        order: impl Iterator<Item = usize>,
    ) {
        for i in order {
            let direct = AeadEngine::new(Backend::Ring, &raw[i]).unwrap();
            let mut buf = [0u8; 32];
            let want = direct.seal(&[1; 12], b"aad", &mut buf).unwrap();
            assert_eq!(seal_with(cache, &keys[i]), want, "key {i}");
        }
    }

    fn ring_keys(n: usize) -> (Vec<SaKey>, Vec<[u8; 16]>) {
        let raw: Vec<[u8; 16]> = (0..n)
            .map(|i| {
                let mut k = [0u8; 16];
                k[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
                k
            })
            .collect();
        let keys = raw
            .iter()
            .map(|r| SaKey::new(r, Backend::Ring).unwrap())
            .collect();
        (keys, raw)
    }

    #[test]
    fn a_thrashing_cache_builds_most_misses_outside_its_lines_and_stays_correct() {
        // Two lines, 1,000 keys in turn: every lookup misses. The first window builds every
        // miss into a line; from the second on, seven misses in eight go to the scratch line.
        let (keys, raw) = ring_keys(1000);
        let mut cache = KeyCache::new(2);
        let n = 4 * WINDOW as usize;
        run(&mut cache, &keys, &raw, (0..n).map(|i| i % 1000));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses), (0, n as u64));
        // The window's own last lookup already sees its verdict.
        let thrashed = (n - WINDOW as usize + 1) as u64;
        let a = u64::from(ADMIT_EVERY);
        let want = thrashed / a * (a - 1) + (thrashed % a).min(a - 1);
        assert_eq!(s.bypassed, want, "{s:?}");
        assert!(cache.thrashing);
        // Back to two keys: each is admitted (or kept in the scratch line) within
        // ADMIT_EVERY misses, the cache stops thrashing and every lookup hits.
        let before = cache.stats();
        run(
            &mut cache,
            &keys,
            &raw,
            (0..3 * WINDOW as usize).map(|i| i % 2),
        );
        let after = cache.stats();
        assert!(
            after.misses - before.misses <= 2 * u64::from(ADMIT_EVERY),
            "{after:?}"
        );
        assert!(!cache.thrashing);
        run(&mut cache, &keys, &raw, (0..WINDOW as usize).map(|i| i % 2));
        assert_eq!(
            cache.stats().hits - after.hits,
            u64::from(WINDOW),
            "all hits now"
        );
    }

    #[test]
    fn a_busy_key_among_thrashing_ones_gets_a_line_and_keeps_it() {
        // One key every fourth lookup, the others each from 1,000: three misses in four.
        let (keys, raw) = ring_keys(1001);
        let mut cache = KeyCache::new(64);
        let order = |k: usize| (0..k).map(|i| if i % 4 == 0 { 1000 } else { (i * 7) % 1000 });
        run(&mut cache, &keys, &raw, order(8 * WINDOW as usize));
        let before = cache.stats();
        assert!(before.bypassed > 0, "{before:?}");
        run(&mut cache, &keys, &raw, order(4 * WINDOW as usize));
        let after = cache.stats();
        // The busy key hits (a cold key admitted into its set can evict it now and then).
        assert!(
            after.hits - before.hits >= u64::from(WINDOW) * 9 / 10,
            "{after:?}"
        );
    }

    #[test]
    fn a_key_in_the_scratch_line_is_wiped_with_its_sa() {
        let (keys, raw) = ring_keys(1000);
        let mut cache = KeyCache::new(2);
        run(
            &mut cache,
            &keys,
            &raw,
            (0..2 * WINDOW as usize).map(|i| i % 1000),
        );
        let last = (2 * WINDOW as usize - 1) % 1000;
        assert_eq!(
            cache.scratch.0, keys[last].id,
            "the last miss went to the scratch line"
        );
        cache.wipe(&keys[last]);
        assert_eq!(cache.scratch.0, 0);
        run(&mut cache, &keys, &raw, std::iter::once(last));
    }

    #[test]
    fn a_wiped_line_is_rebuilt_on_next_use() {
        let key = SaKey::new(&[9; 32], Backend::RustCrypto).unwrap();
        let other = SaKey::new(&[8; 16], Backend::Ring).unwrap();
        let mut cache = KeyCache::new(64);
        let want = seal_with(&mut cache, &key);
        seal_with(&mut cache, &other);
        cache.wipe(&key);
        cache.wipe(&other);
        cache.wipe(&other); // twice: nothing left to wipe
        assert_eq!(seal_with(&mut cache, &key), want);
        assert_eq!(
            cache.stats(),
            KeyCacheStats {
                hits: 0,
                misses: 3,
                bypassed: 0
            }
        );
    }

    #[test]
    fn ids_differ_and_debug_shows_no_key() {
        let a = SaKey::new(&[0xab; 16], Backend::Ring).unwrap();
        let b = SaKey::new(&[0xab; 16], Backend::Ring).unwrap();
        assert_ne!(a.id, b.id);
        assert_ne!(a.id, 0);
        let s = format!("{a:?} {:?}", KeyCache::new(8));
        assert!(
            s.contains("AES-128") && !s.contains("171") && !s.contains("ab"),
            "{s}"
        );
        assert!(matches!(
            SaKey::new(&[0; 24], Backend::Ring),
            Err(BadKeyLength(24))
        ));
    }
}
