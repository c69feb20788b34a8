//! The process allocator: jemalloc, set up (in `.cargo/config.toml`) to give memory back to the
//! system within about a second of a burst ending, instead of staying resident at the peak as
//! glibc's fragmented per-thread heaps do (bench/RESULTS.md, "Second round": measurements).

// Settings compiled in through JEMALLOC_SYS_WITH_MALLOC_CONF, and why:
// - background_thread + dirty_decay_ms:1000 + muzzy_decay_ms:0: a jemalloc thread returns freed
//   pages with MADV_DONTNEED about a second after they were last used (RSS drops; MADV_FREE'd
//   "muzzy" pages would still count as resident), so serve threads never pay for purging.
// - tcache_max:8192 + tcache_nslots_small_max:20: per-thread caches keep objects up to 8 KB
//   (hyper's 8 KB connection buffers included: above the cache they cost ~6k instructions per
//   request in arena slow paths), 20 of each size at most; with the default 32 KB and 200
//   slots each idle serve thread sits on megabytes freed at the end of a burst, which no decay
//   returns. Measured: 8192 keeps ~0.3 MB more after a burst than 4096 (bench/RESULTS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// One line for the start-up log: which allocator and settings this process runs with.
#[cfg(not(target_env = "msvc"))]
pub fn describe() -> String {
    use tikv_jemalloc_ctl::{Access, AsName};
    let version: &str = b"version\0".name().read().unwrap_or("?");
    let conf: &str = b"config.malloc_conf\0".name().read().unwrap_or("");
    format!("jemalloc {version} ({conf})")
}

#[cfg(target_env = "msvc")]
pub fn describe() -> String {
    "system allocator".to_string()
}

/// Hands the calling thread's cached free memory back to the system; serve threads call it
/// when they go quiet (`GatewayOptions::on_serve_thread_quiet`). jemalloc only trims a
/// thread cache as that thread allocates, so an idle thread would sit on what the end of a
/// burst freed into it (~0.7 MB measured after 1,024 streams, bench/RESULTS.md).
/// Turning the cache off and on empties it into the thread's arena; setting the arena's
/// dirty decay time to 0 and back purges its unused pages at once. (Only 0 purges from a
/// thread that is not jemalloc's background thread; re-setting the same time would restart
/// the decay clock and so postpone the background thread's purge instead.)
/// Settings an operator chose through `_RJEM_MALLOC_CONF` stay as they are: a thread without
/// a cache is not given one, and an arena that never purges (decay -1) is not purged.
#[cfg(not(target_env = "msvc"))]
pub fn release_thread_memory() {
    use tikv_jemalloc_ctl::{Access, AsName};
    let cache = b"thread.tcache.enabled\0".name();
    if Access::<bool>::read(cache) == Ok(true) && cache.write(false).is_ok() {
        let _ = cache.write(true);
    }
    let Ok(arena) = Access::<u32>::read(b"thread.arena\0".name()) else {
        return;
    };
    let decay = format!("arena.{arena}.dirty_decay_ms\0");
    if let Ok(ms) = Access::<isize>::read(decay.name())
        && ms > 0
        && decay.name().write(0isize).is_ok()
    {
        let _ = decay.name().write(ms);
    }
}

#[cfg(target_env = "msvc")]
pub fn release_thread_memory() {}

#[cfg(all(test, not(target_env = "msvc")))]
mod tests {
    use tikv_jemalloc_ctl::{Access, AsName};

    // Fails when the build did not pick up .cargo/config.toml (e.g. built from another
    // directory): the binary would then keep burst memory resident again.
    #[test]
    fn the_compiled_in_settings_are_in_effect() {
        let background: bool = b"opt.background_thread\0".name().read().unwrap();
        let dirty: isize = b"opt.dirty_decay_ms\0".name().read().unwrap();
        let muzzy: isize = b"opt.muzzy_decay_ms\0".name().read().unwrap();
        let tcache_max: usize = b"opt.tcache_max\0".name().read().unwrap();
        assert!(background, "background purging thread is off");
        assert_eq!((dirty, muzzy, tcache_max), (1000, 0, 8192));
        assert!(
            super::describe().starts_with("jemalloc 5."),
            "{}",
            super::describe()
        );
    }

    #[test]
    fn releasing_does_not_give_a_thread_a_cache_it_did_not_have() {
        std::thread::spawn(|| {
            let cache = b"thread.tcache.enabled\0".name();
            cache.write(false).unwrap();
            super::release_thread_memory();
            let enabled: bool = cache.read().unwrap();
            assert!(!enabled, "the release turned the thread cache on");
        })
        .join()
        .unwrap();
    }

    // The release leaves the thread with its cache on and its arena's settings as they were
    // (what it frees is measured by the benchmark: RSS after load, bench/RESULTS.md).
    #[test]
    fn releasing_a_threads_memory_keeps_its_cache_and_decay_settings() {
        std::thread::spawn(|| {
            let arena: u32 = b"thread.arena\0".name().read().unwrap();
            let decay = format!("arena.{arena}.dirty_decay_ms\0");
            let before: isize = decay.name().read().unwrap();
            // Fill the thread cache with freed small objects.
            let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![1u8; 64 + i % 4096]).collect();
            drop(blocks);
            super::release_thread_memory();
            let cache: bool = b"thread.tcache.enabled\0".name().read().unwrap();
            assert!(cache, "the thread cache was left off");
            let after: isize = decay.name().read().unwrap();
            assert_eq!(after, before);
            assert_eq!(before, 1000);
            // And the thread still allocates normally.
            let s = "x".repeat(100);
            assert_eq!(s.len(), 100);
        })
        .join()
        .unwrap();
    }
}
