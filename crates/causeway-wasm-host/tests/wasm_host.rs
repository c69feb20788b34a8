//! End-to-end tests of the plugin host against small WAT guests: the ABI round trip, load-time
//! validation, imports, limits, failure isolation, the instance pool and cleanup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use causeway_wasm_host::{
    Hook, LogLevel, LogLine, LogSink, ModuleSource, WasmError, WasmHost, WasmLimits, WasmPlugin,
};

// ---------------------------------------------------------------------------------------------
// Guest building blocks. Memory map: 16.. name, 256.. static strings, 1024.. scratch,
// 2048..4096 stored config, 8192.. heap.

/// Memory, a bump allocator with a 4-byte size header (rewinds when all buffers are freed),
/// and helpers: `$pack`, `$reply` (copy into a fresh buffer), `$echo`, `$digits`.
const ALLOC: &str = r#"
  (memory (export "memory") 1)
  (global $heap_base i32 (i32.const 8192))
  (global $bump (mut i32) (i32.const 8192))
  (global $live (mut i32) (i32.const 0))
  (func $malloc (export "malloc") (param $size i32) (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr (i32.add (global.get $bump) (i32.const 4)))
    (local.set $end
      (i32.and (i32.add (i32.add (local.get $ptr) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                           (i32.const 16)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (i32.store (i32.sub (local.get $ptr) (i32.const 4)) (local.get $size))
    (global.set $bump (local.get $end))
    (global.set $live (i32.add (global.get $live) (i32.const 1)))
    (local.get $ptr))
  (func $release (param $ptr i32)
    (global.set $live (i32.sub (global.get $live) (i32.const 1)))
    (if (i32.eqz (global.get $live)) (then (global.set $bump (global.get $heap_base)))))
  (func $pack (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))
  (func $reply (param $src i32) (param $len i32) (result i64)
    (local $out i32)
    (local.set $out (call $malloc (local.get $len)))
    (memory.copy (local.get $out) (local.get $src) (local.get $len))
    (call $pack (local.get $out) (local.get $len)))
  (func $echo (param i32 i32) (result i64) (call $reply (local.get 0) (local.get 1)))
  (func $digits (param $at i32) (param $n i32)
    (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.div_u (local.get $n) (i32.const 10))))
    (i32.store8 (i32.add (local.get $at) (i32.const 1))
                (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10)))))
"#;

/// `free(ptr, size)` that traps unless `size` is what `malloc` was asked for.
const FREE_SIZED: &str = r#"
  (func (export "free") (param $ptr i32) (param $size i32)
    (if (i32.eqz (local.get $ptr)) (then (return)))
    (if (i32.ne (i32.load (i32.sub (local.get $ptr) (i32.const 4))) (local.get $size))
      (then unreachable))
    (call $release (local.get $ptr)))
"#;

/// `free(ptr)`, the TinyGo arity.
const FREE_PTR: &str = r#"
  (func (export "free") (param $ptr i32)
    (if (i32.eqz (local.get $ptr)) (then (return)))
    (call $release (local.get $ptr)))
"#;

const NAME: &str = r#"
  (data (i32.const 16) "test-plugin")
  (func (export "get_name") (result i64) (call $pack (i32.const 16) (i32.const 11)))
"#;

const INIT_OK: &str = r#"(func (export "init") (param i32 i32) (result i32) (i32.const 0))"#;

const ENV_LOG: &str = r#"(import "env" "log" (func $log (param i32 i32)))"#;

/// `init` that logs "init" (to count instances) and succeeds.
const INIT_LOGGED: &str = r#"
  (data (i32.const 256) "init")
  (func (export "init") (param i32 i32) (result i32)
    (call $log (i32.const 256) (i32.const 4))
    (i32.const 0))
"#;

fn module(imports: &[&str], body: &[&str]) -> ModuleSource {
    ModuleSource::Bytes(format!("(module {} {})", imports.join("\n"), body.join("\n")).into_bytes())
}

/// A complete plugin: sized free, name, `init` returning 0, plus `body`.
fn plugin_with(imports: &[&str], body: &str) -> ModuleSource {
    module(imports, &[ALLOC, FREE_SIZED, NAME, INIT_OK, body])
}

fn host() -> &'static WasmHost {
    static HOST: OnceLock<WasmHost> = OnceLock::new();
    HOST.get_or_init(|| WasmHost::new().unwrap())
}

#[derive(Debug, Clone, Default)]
struct Logs(Arc<Mutex<Vec<LogLine>>>);

impl Logs {
    fn sink(&self) -> LogSink {
        let lines = Arc::clone(&self.0);
        Arc::new(move |line| lines.lock().unwrap().push(line))
    }
    fn lines(&self) -> Vec<LogLine> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self, message: &str) -> usize {
        self.lines().iter().filter(|l| l.message == message).count()
    }
}

fn try_load(source: ModuleSource, limits: WasmLimits) -> Result<(WasmPlugin, Logs), WasmError> {
    let logs = Logs::default();
    let plugin = host().load(source, b"{}", limits, logs.sink())?;
    Ok((plugin, logs))
}

fn load(source: ModuleSource) -> (WasmPlugin, Logs) {
    try_load(source, WasmLimits::default()).unwrap()
}

fn load_err(source: ModuleSource) -> WasmError {
    match try_load(source, WasmLimits::default()) {
        Ok((plugin, _)) => panic!("expected a load failure, loaded {plugin:?}"),
        Err(err) => err,
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn assert_load_error_mentions(err: WasmError, needle: &str) {
    match &err {
        WasmError::Load(message) => assert!(message.contains(needle), "{message}"),
        other => panic!("expected Load error mentioning {needle}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The ABI round trip.

#[test]
fn echo_fixture_round_trips_every_hook() {
    let (plugin, _) = load(ModuleSource::Path(fixture("echo.wat")));
    assert_eq!(plugin.name(), "echo");
    assert_eq!(plugin.hooks(), &Hook::ALL);
    for hook in Hook::ALL {
        let input = format!(r#"{{"hook":"{hook}","body":"héllo"}}"#);
        assert_eq!(
            plugin.call(hook, input.as_bytes()).unwrap(),
            input.as_bytes()
        );
    }
    assert_eq!(plugin.call(Hook::PreLlm, b"").unwrap(), b"");
    let big = vec![b'x'; 300_000];
    assert_eq!(plugin.call(Hook::PostLlm, &big).unwrap(), big);
}

#[test]
fn binary_and_text_are_told_apart_by_magic_not_extension() {
    let text = std::fs::read(fixture("echo.wat")).unwrap();
    let binary = wat::parse_bytes(&text).unwrap().into_owned();
    assert!(binary.starts_with(b"\0asm"));
    let dir = tempfile::tempdir().unwrap();
    let misnamed_binary = dir.path().join("plugin.wat");
    let misnamed_text = dir.path().join("plugin.wasm");
    std::fs::write(&misnamed_binary, &binary).unwrap();
    std::fs::write(&misnamed_text, &text).unwrap();
    for source in [
        ModuleSource::Bytes(binary.clone()),
        ModuleSource::Path(misnamed_binary),
        ModuleSource::Path(misnamed_text),
    ] {
        let (plugin, _) = load(source);
        assert_eq!(plugin.call(Hook::PreLlm, b"{}").unwrap(), b"{}");
    }
}

#[test]
fn not_a_module_is_a_load_error() {
    assert_load_error_mentions(
        load_err(ModuleSource::Bytes(b"hello, I am not wasm".to_vec())),
        "no \\0asm header, so read as WAT text",
    );
    assert_load_error_mentions(
        load_err(ModuleSource::Bytes(b"\0asm\x01\0\0\0garbage".to_vec())),
        "invalid WebAssembly binary",
    );
    assert_load_error_mentions(
        load_err(ModuleSource::Path(fixture("does-not-exist.wasm"))),
        "cannot read",
    );
}

#[test]
fn init_receives_the_config_on_every_instance() {
    // `init` keeps a copy of the config; `pre_hook` returns it; `http_pre_hook` traps so the
    // next call must run on a fresh instance that was given the config too.
    let body = r#"
      (global $config_len (mut i32) (i32.const 0))
      (func (export "init") (param $ptr i32) (param $len i32) (result i32)
        (if (i32.gt_u (local.get $len) (i32.const 2048)) (then (return (i32.const 2))))
        (memory.copy (i32.const 2048) (local.get $ptr) (local.get $len))
        (global.set $config_len (local.get $len))
        (i32.const 0))
      (func (export "pre_hook") (param i32 i32) (result i64)
        (call $reply (i32.const 2048) (global.get $config_len)))
      (func (export "http_pre_hook") (param i32 i32) (result i64) unreachable)
    "#;
    let config = br#"{"greeting":"hi","n":42}"#;
    let plugin = host()
        .load(
            module(&[], &[ALLOC, FREE_SIZED, NAME, body]),
            config,
            WasmLimits::default(),
            Logs::default().sink(),
        )
        .unwrap();
    assert_eq!(plugin.name(), "test-plugin");
    assert_eq!(plugin.call(Hook::PreLlm, b"{}").unwrap(), config);
    assert!(matches!(
        plugin.call(Hook::HttpPre, b"{}"),
        Err(WasmError::Trap(_))
    ));
    assert_eq!(plugin.call(Hook::PreLlm, b"{}").unwrap(), config);
}

#[test]
fn init_returning_non_zero_is_an_init_error() {
    let source = module(
        &[],
        &[
            ALLOC,
            FREE_SIZED,
            NAME,
            r#"(func (export "init") (param i32 i32) (result i32) (i32.const 1))"#,
        ],
    );
    match try_load(source, WasmLimits::default()) {
        Err(WasmError::Init(message)) => assert_eq!(message, "init returned 1"),
        other => panic!("expected Init error, got {other:?}"),
    }
}

#[test]
fn init_that_traps_is_an_init_error() {
    let source = module(
        &[],
        &[
            ALLOC,
            FREE_SIZED,
            NAME,
            r#"(func (export "init") (param i32 i32) (result i32) unreachable)"#,
        ],
    );
    match try_load(source, WasmLimits::default()) {
        Err(WasmError::Init(message)) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected Init error, got {other:?}"),
    }
}

#[test]
fn missing_required_exports_are_named() {
    let without_malloc = ALLOC.replace(r#"(export "malloc")"#, "");
    let err = load_err(module(&[], &[&without_malloc, FREE_SIZED, NAME, INIT_OK]));
    assert_load_error_mentions(err, "`malloc`");
    assert_load_error_mentions(load_err(module(&[], &[ALLOC, NAME, INIT_OK])), "`free`");
    assert_load_error_mentions(
        load_err(module(&[], &[ALLOC, FREE_SIZED, INIT_OK])),
        "`get_name`",
    );
    assert_load_error_mentions(load_err(module(&[], &[ALLOC, FREE_SIZED, NAME])), "`init`");
    let without_memory = ALLOC.replace(r#"(memory (export "memory") 1)"#, "(memory 1)");
    assert_load_error_mentions(
        load_err(module(&[], &[&without_memory, FREE_SIZED, NAME, INIT_OK])),
        "`memory`",
    );
}

#[test]
fn wrong_signatures_are_load_errors() {
    let hook = r#"(func (export "pre_hook") (param i32) (result i64) (i64.const 0))"#;
    assert_load_error_mentions(
        load_err(plugin_with(&[], hook)),
        "export `pre_hook` has type (i32) -> i64; expected (i32, i32) -> i64",
    );
    let free = r#"(func (export "free") (param i64))"#;
    assert_load_error_mentions(
        load_err(module(&[], &[ALLOC, free, NAME, INIT_OK])),
        "export `free` has type (i64)",
    );
    let cleanup = r#"(func (export "cleanup"))"#;
    assert_load_error_mentions(load_err(plugin_with(&[], cleanup)), "export `cleanup`");
    let bad_import = r#"(import "env" "log" (func (param i64)))"#;
    assert_load_error_mentions(load_err(plugin_with(&[bad_import], "")), "env::log");
}

#[test]
fn unknown_imports_fail_the_load_by_name() {
    let import = r#"(import "env" "fetch_secret" (func (param i32) (result i32)))"#;
    assert_load_error_mentions(load_err(plugin_with(&[import], "")), "`env.fetch_secret`");
    let import = r#"(import "host" "memory" (memory 1))"#;
    assert_load_error_mentions(load_err(plugin_with(&[import], "")), "`host.memory`");
}

#[test]
fn unknown_wasi_functions_load_and_return_enosys() {
    let import = r#"(import "wasi_snapshot_preview1" "sock_accept"
                      (func $sock_accept (param i32 i32 i32) (result i32)))"#;
    let body = r#"
      (func (export "pre_hook") (param i32 i32) (result i64)
        (call $digits (i32.const 1024)
          (call $sock_accept (i32.const 3) (i32.const 0) (i32.const 1024)))
        (call $reply (i32.const 1024) (i32.const 2)))
    "#;
    let (plugin, _) = load(plugin_with(&[import], body));
    assert_eq!(plugin.call(Hook::PreLlm, b"{}").unwrap(), b"52");
}

#[test]
fn calling_a_hook_the_module_lacks_is_no_such_hook() {
    let (plugin, _) = load(plugin_with(
        &[],
        r#"(func (export "pre_hook") (param i32 i32) (result i64) (call $echo (local.get 0) (local.get 1)))"#,
    ));
    assert_eq!(plugin.hooks(), &[Hook::PreLlm]);
    assert_eq!(
        plugin.call(Hook::PostLlm, b"{}"),
        Err(WasmError::NoSuchHook(Hook::PostLlm))
    );
}

// ---------------------------------------------------------------------------------------------
// free arity and buffer ownership.

/// `pre_hook` echoes; `post_hook` reports how many buffers are live during the call (two
/// digits): only its own input, if the host frees everything it should.
const ECHO_AND_LIVE: &str = r#"
  (func (export "pre_hook") (param i32 i32) (result i64) (call $echo (local.get 0) (local.get 1)))
  (func (export "post_hook") (param i32 i32) (result i64)
    (call $digits (i32.const 1024) (global.get $live))
    (call $reply (i32.const 1024) (i32.const 2)))
"#;

#[test]
fn two_parameter_free_is_given_the_allocation_size() {
    let (plugin, _) = load(plugin_with(&[], ECHO_AND_LIVE));
    for size in [1usize, 7, 8, 9, 100, 4096, 70_000] {
        let input = vec![b'a'; size];
        assert_eq!(plugin.call(Hook::PreLlm, &input).unwrap(), input);
    }
    assert_eq!(plugin.call(Hook::PostLlm, b"{}").unwrap(), b"01");
}

#[test]
fn the_size_check_in_the_sized_free_guest_does_catch_mistakes() {
    // Allocates 10 bytes but reports 5: the host frees (ptr, 5) and the guest traps, which
    // shows the guest above would notice a host passing wrong sizes.
    let body = r#"
      (func (export "pre_hook") (param i32 i32) (result i64)
        (call $pack (call $malloc (i32.const 10)) (i32.const 5)))
    "#;
    let (plugin, _) = load(plugin_with(&[], body));
    match plugin.call(Hook::PreLlm, b"{}") {
        Err(WasmError::Trap(message)) => assert!(message.contains("free trapped"), "{message}"),
        other => panic!("expected a trap from free, got {other:?}"),
    }
}

#[test]
fn one_parameter_free_is_supported() {
    let (plugin, _) = load(module(
        &[],
        &[ALLOC, FREE_PTR, NAME, INIT_OK, ECHO_AND_LIVE],
    ));
    for size in [1usize, 10, 5000] {
        let input = vec![b'b'; size];
        assert_eq!(plugin.call(Hook::PreLlm, &input).unwrap(), input);
    }
    assert_eq!(plugin.call(Hook::PostLlm, b"{}").unwrap(), b"01");
}

#[test]
fn output_that_reuses_the_input_buffer_is_freed_once() {
    let body = r#"
      (func (export "pre_hook") (param i32 i32) (result i64) (call $pack (local.get 0) (local.get 1)))
      (func (export "post_hook") (param i32 i32) (result i64)
        (call $digits (i32.const 1024) (global.get $live))
        (call $reply (i32.const 1024) (i32.const 2)))
    "#;
    let (plugin, _) = load(plugin_with(&[], body));
    assert_eq!(plugin.call(Hook::PreLlm, b"in place").unwrap(), b"in place");
    assert_eq!(plugin.call(Hook::PostLlm, b"{}").unwrap(), b"01");
}

// ---------------------------------------------------------------------------------------------
// Failures are contained: the instance is discarded and the next call runs on a fresh one.

const TRAPS: &str = r#"
  (func (export "pre_hook") (param i32 i32) (result i64) (call $echo (local.get 0) (local.get 1)))
  (func $explode (export "post_hook") (param i32 i32) (result i64) unreachable)
"#;

#[test]
fn a_trap_fails_the_call_and_the_next_call_gets_a_fresh_instance() {
    let (plugin, logs) = load(module(
        &[ENV_LOG],
        &[ALLOC, FREE_SIZED, NAME, INIT_LOGGED, TRAPS],
    ));
    assert_eq!(logs.count("init"), 1);
    match plugin.call(Hook::PostLlm, b"{}") {
        Err(WasmError::Trap(message)) => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(message.contains("explode"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(logs.lines().iter().any(|line| line.level == LogLevel::Error
        && line.message.starts_with("post_hook failed: plugin trapped")));
    assert_eq!(plugin.call(Hook::PreLlm, b"again").unwrap(), b"again");
    assert_eq!(
        logs.count("init"),
        2,
        "a fresh instance was started and initialised"
    );
}

#[test]
fn an_infinite_loop_times_out_and_the_next_call_works() {
    let body = r#"
      (func (export "pre_hook") (param i32 i32) (result i64) (call $echo (local.get 0) (local.get 1)))
      (func (export "post_hook") (param i32 i32) (result i64) (loop $spin (br $spin)) (i64.const 0))
    "#;
    let limits = WasmLimits {
        call_timeout: Duration::from_millis(20),
        ..WasmLimits::default()
    };
    let (plugin, _) = try_load(plugin_with(&[], body), limits).unwrap();
    let started = Instant::now();
    assert_eq!(
        plugin.call(Hook::PostLlm, b"{}"),
        Err(WasmError::Timeout(Duration::from_millis(20)))
    );
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(19), "{elapsed:?}");
    // Generous: the test machine is shared with other builds.
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(plugin.call(Hook::PreLlm, b"ok").unwrap(), b"ok");
}

#[test]
fn an_infinite_loop_in_init_times_out_the_load() {
    let init = r#"(func (export "init") (param i32 i32) (result i32) (loop $spin (br $spin)) (i32.const 0))"#;
    let limits = WasmLimits {
        init_timeout: Duration::from_millis(30),
        ..WasmLimits::default()
    };
    match try_load(module(&[], &[ALLOC, FREE_SIZED, NAME, init]), limits) {
        Err(WasmError::Timeout(limit)) => assert_eq!(limit, Duration::from_millis(30)),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn runaway_recursion_is_a_trap_not_a_crash() {
    let body = r#"
      (func $deeper (param i32) (result i32) (call $deeper (i32.add (local.get 0) (i32.const 1))))
      (func (export "pre_hook") (param i32 i32) (result i64)
        (drop (call $deeper (i32.const 0))) (i64.const 0))
      (func (export "post_hook") (param i32 i32) (result i64) (call $echo (local.get 0) (local.get 1)))
    "#;
    let (plugin, _) = load(plugin_with(&[], body));
    match plugin.call(Hook::PreLlm, b"{}") {
        Err(WasmError::Trap(message)) => {
            assert!(message.contains("call stack exhausted"), "{message}")
        }
        other => panic!("expected a stack overflow trap, got {other:?}"),
    }
    assert_eq!(plugin.call(Hook::PostLlm, b"{}").unwrap(), b"{}");
}

// ---------------------------------------------------------------------------------------------
// Memory limit.

const TWO_MIB: usize = 2 * 1024 * 1024;

#[test]
fn memory_grow_past_the_limit_returns_minus_one_to_the_guest() {
    // pre_hook asks for `input[0]` pages and answers "granted" or "refused".
    let body = r#"
      (data (i32.const 256) "granted")
      (data (i32.const 264) "refused")
      (func (export "pre_hook") (param $ptr i32) (param $len i32) (result i64)
        (if (result i64) (i32.eq (memory.grow (i32.load8_u (local.get $ptr))) (i32.const -1))
          (then (call $reply (i32.const 264) (i32.const 7)))
          (else (call $reply (i32.const 256) (i32.const 7)))))
      (func (export "post_hook") (param i32 i32) (result i64)
        (if (i32.eq (memory.grow (i32.const 64)) (i32.const -1)) (then unreachable))
        (i64.const 0))
    "#;
    let limits = WasmLimits {
        memory_bytes: TWO_MIB,
        ..WasmLimits::default()
    };
    let (plugin, _) = try_load(plugin_with(&[], body), limits).unwrap();
    assert_eq!(plugin.call(Hook::PreLlm, &[64]).unwrap(), b"refused");
    assert_eq!(plugin.call(Hook::PreLlm, &[8]).unwrap(), b"granted");
    // A guest that traps after its growth was refused ran out of memory.
    assert_eq!(
        plugin.call(Hook::PostLlm, b"{}"),
        Err(WasmError::MemoryLimit)
    );
    assert_eq!(plugin.call(Hook::PreLlm, &[8]).unwrap(), b"granted");
}

#[test]
fn a_module_whose_initial_memory_exceeds_the_limit_fails_with_memory_limit() {
    // 64 pages (4 MiB) with data placed at 3 MiB: cannot be instantiated under 2 MiB.
    let big = ALLOC.replace(
        r#"(memory (export "memory") 1)"#,
        r#"(memory (export "memory") 64)"#,
    );
    let data = r#"(data (i32.const 3145728) "far away")"#;
    let limits = WasmLimits {
        memory_bytes: TWO_MIB,
        ..WasmLimits::default()
    };
    match try_load(
        module(&[], &[&big, FREE_SIZED, NAME, INIT_OK, data]),
        limits,
    ) {
        Err(WasmError::MemoryLimit) => {}
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Bad output.

#[test]
fn out_of_bounds_output_is_bad_output() {
    let body = r#"
      (func (export "pre_hook") (param i32 i32) (result i64)
        (call $pack (i32.const 0xFFFF0000) (i32.const 16)))
      (func (export "post_hook") (param i32 i32) (result i64) (call $echo (local.get 0) (local.get 1)))
    "#;
    let (plugin, _) = load(plugin_with(&[], body));
    match plugin.call(Hook::PreLlm, b"{}") {
        Err(WasmError::BadOutput(message)) => assert!(message.contains("outside"), "{message}"),
        other => panic!("expected BadOutput, got {other:?}"),
    }
    assert_eq!(plugin.call(Hook::PostLlm, b"{}").unwrap(), b"{}");
}

#[test]
fn oversized_output_is_bad_output() {
    let body = r#"
      (func (export "pre_hook") (param i32 i32) (result i64) (call $pack (i32.const 0) (i32.const 2000)))
      (func (export "post_hook") (param i32 i32) (result i64) (call $pack (i32.const 0) (i32.const -1)))
    "#;
    let limits = WasmLimits {
        max_output_bytes: 1024,
        ..WasmLimits::default()
    };
    let (plugin, _) = try_load(plugin_with(&[], body), limits).unwrap();
    for hook in [Hook::PreLlm, Hook::PostLlm] {
        match plugin.call(hook, b"{}") {
            Err(WasmError::BadOutput(message)) => {
                assert!(message.contains("1024-byte output limit"), "{message}")
            }
            other => panic!("expected BadOutput, got {other:?}"),
        }
    }
}

#[test]
fn output_that_is_not_utf8_is_bad_output() {
    let body = r#"
      (data (i32.const 256) "\ff\fe")
      (func (export "pre_hook") (param i32 i32) (result i64) (call $reply (i32.const 256) (i32.const 2)))
    "#;
    let (plugin, _) = load(plugin_with(&[], body));
    match plugin.call(Hook::PreLlm, b"{}") {
        Err(WasmError::BadOutput(message)) => assert!(message.contains("UTF-8"), "{message}"),
        other => panic!("expected BadOutput, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Imports: logging, WASI, AssemblyScript.

#[test]
fn env_log_and_wasi_fd_write_become_log_lines() {
    let imports = [
        ENV_LOG,
        r#"(import "env" "log_level" (func $log_level (param i32 i32 i32)))"#,
        r#"(import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))"#,
    ];
    // iovec tables at 512 (stdout: "par" + "tial\nsecond") and 528 (stderr: "oops\n").
    let body = r#"
      (data (i32.const 256) "hello from log")
      (data (i32.const 272) "bad things")
      (data (i32.const 288) "partial\nsecond")
      (data (i32.const 304) "oops\n")
      (data (i32.const 512) "\20\01\00\00\03\00\00\00\23\01\00\00\0b\00\00\00")
      (data (i32.const 528) "\30\01\00\00\05\00\00\00")
      (func (export "pre_hook") (param i32 i32) (result i64)
        (call $log (i32.const 256) (i32.const 14))
        (call $log_level (i32.const 3) (i32.const 272) (i32.const 10))
        (call $digits (i32.const 1024) (call $fd_write (i32.const 1) (i32.const 512) (i32.const 2) (i32.const 1100)))
        (call $digits (i32.const 1026) (call $fd_write (i32.const 2) (i32.const 528) (i32.const 1) (i32.const 1104)))
        (call $digits (i32.const 1028) (call $fd_write (i32.const 7) (i32.const 528) (i32.const 1) (i32.const 1108)))
        (call $digits (i32.const 1030) (i32.load (i32.const 1100)))
        (call $reply (i32.const 1024) (i32.const 8)))
    "#;
    let (plugin, logs) = load(plugin_with(&imports, body));
    // errnos: stdout 0, stderr 0, fd 7 BADF; 14 bytes written to stdout.
    assert_eq!(plugin.call(Hook::PreLlm, b"{}").unwrap(), b"00000814");
    let line = |level, message: &str| LogLine {
        level,
        message: message.to_owned(),
    };
    assert_eq!(
        logs.lines(),
        vec![
            line(LogLevel::Info, "hello from log"),
            line(LogLevel::Error, "bad things"),
            line(LogLevel::Info, "partial"),
            line(LogLevel::Warn, "oops"),
            // The unterminated tail is flushed when the call ends.
            line(LogLevel::Info, "second"),
        ]
    );
}

#[test]
fn wasi_shim_offers_no_capabilities_but_clocks_and_randomness() {
    let wasi = |name: &str, sig: &str| {
        format!(r#"(import "wasi_snapshot_preview1" "{name}" (func ${name} {sig}))"#)
    };
    let imports = [
        wasi("fd_prestat_get", "(param i32 i32) (result i32)"),
        wasi(
            "path_open",
            "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)",
        ),
        wasi("environ_sizes_get", "(param i32 i32) (result i32)"),
        wasi("args_sizes_get", "(param i32 i32) (result i32)"),
        wasi("random_get", "(param i32 i32) (result i32)"),
        wasi("clock_time_get", "(param i32 i64 i32) (result i32)"),
        wasi("sched_yield", "(result i32)"),
        wasi("poll_oneoff", "(param i32 i32 i32 i32) (result i32)"),
        wasi("fd_read", "(param i32 i32 i32 i32) (result i32)"),
    ];
    let imports: Vec<&str> = imports.iter().map(String::as_str).collect();
    // Writes ten two-digit results; the last two check the values written by the calls.
    let body = r#"
      (func (export "pre_hook") (param i32 i32) (result i64)
        (i64.store (i32.const 1200) (i64.const -1))
        (call $digits (i32.const 1024) (call $fd_prestat_get (i32.const 3) (i32.const 1100)))
        (call $digits (i32.const 1026) (call $path_open (i32.const 3) (i32.const 0) (i32.const 256)
          (i32.const 4) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 1100)))
        (call $digits (i32.const 1028) (call $environ_sizes_get (i32.const 1200) (i32.const 1204)))
        (call $digits (i32.const 1030) (call $args_sizes_get (i32.const 1200) (i32.const 1204)))
        (call $digits (i32.const 1032) (call $random_get (i32.const 1300) (i32.const 64)))
        (call $digits (i32.const 1034) (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 1400)))
        (call $digits (i32.const 1036) (call $sched_yield))
        (call $digits (i32.const 1038) (call $poll_oneoff (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1100)))
        (call $digits (i32.const 1040) (call $fd_read (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1100)))
        ;; environment and arguments are empty: both counts were overwritten with zero
        (call $digits (i32.const 1042) (i32.wrap_i64 (i64.load (i32.const 1200))))
        ;; realtime clock is after 2020 (1.6e18 ns)
        (call $digits (i32.const 1044)
          (i64.gt_u (i64.load (i32.const 1400)) (i64.const 1600000000000000000)))
        ;; a faulting pointer is EFAULT, not a trap
        (call $digits (i32.const 1046) (call $random_get (i32.const 65530) (i32.const 64)))
        (call $reply (i32.const 1024) (i32.const 24)))
    "#;
    let (plugin, _) = load(plugin_with(&imports, body));
    let out = String::from_utf8(plugin.call(Hook::PreLlm, b"{}").unwrap()).unwrap();
    let codes: Vec<&str> = (0..out.len()).step_by(2).map(|i| &out[i..i + 2]).collect();
    assert_eq!(
        codes,
        [
            "08", "08", "00", "00", "00", "00", "00", "52", "08", "00", "01", "21"
        ],
        "prestat, path_open, environ, args, random, clock, yield, poll, fd_read, sizes, time, fault"
    );
}

#[test]
fn proc_exit_is_a_trap_that_names_the_code() {
    let import = r#"(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))"#;
    let body = r#"
      (func (export "pre_hook") (param i32 i32) (result i64) (call $exit (i32.const 3)) (i64.const 0))
      (func (export "post_hook") (param i32 i32) (result i64) (call $echo (local.get 0) (local.get 1)))
    "#;
    let (plugin, _) = load(plugin_with(&[import], body));
    match plugin.call(Hook::PreLlm, b"{}") {
        Err(WasmError::Trap(message)) => {
            assert!(message.contains("plugin called proc_exit(3)"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(plugin.call(Hook::PostLlm, b"{}").unwrap(), b"{}");
}

#[test]
fn a_tinygo_style_start_that_exits_zero_still_loads() {
    // `_start` sets up the "runtime" and then calls proc_exit(0), as TinyGo commands do;
    // hooks refuse to run unless it ran first, on every instance.
    let imports = [
        r#"(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))"#,
        ENV_LOG,
    ];
    let body = r#"
      (global $ready (mut i32) (i32.const 0))
      (data (i32.const 256) "ready")
      (func (export "_start") (global.set $ready (i32.const 1)) (call $exit (i32.const 0)))
      (func (export "pre_hook") (param i32 i32) (result i64)
        (if (i32.eqz (global.get $ready)) (then unreachable))
        (call $reply (i32.const 256) (i32.const 5)))
      (func (export "post_hook") (param i32 i32) (result i64) unreachable)
    "#;
    let (plugin, _) = load(plugin_with(&imports, body));
    assert_eq!(plugin.call(Hook::PreLlm, b"{}").unwrap(), b"ready");
    assert!(plugin.call(Hook::PostLlm, b"{}").is_err());
    assert_eq!(plugin.call(Hook::PreLlm, b"{}").unwrap(), b"ready");
}

#[test]
fn a_start_that_exits_non_zero_fails_the_load() {
    let import = r#"(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))"#;
    let body = r#"(func (export "_start") (call $exit (i32.const 2)))"#;
    match try_load(plugin_with(&[import], body), WasmLimits::default()) {
        Err(WasmError::Init(message)) => {
            assert!(
                message.contains("`_start` failed: plugin called proc_exit(2)"),
                "{message}"
            )
        }
        other => panic!("expected Init error, got {other:?}"),
    }
}

/// AssemblyScript strings: u32 byte length at ptr-4, then UTF-16LE. "boom" at 260, "a.ts" at 276.
const AS_STRINGS: &str = r#"
  (data (i32.const 256) "\08\00\00\00b\00o\00o\00m\00")
  (data (i32.const 272) "\08\00\00\00a\00.\00t\00s\00")
"#;

#[test]
fn assemblyscript_abort_is_a_trap_with_message_and_location() {
    let import = r#"(import "env" "abort" (func $abort (param i32 i32 i32 i32)))"#;
    let body = r#"
      (func (export "pre_hook") (param i32 i32) (result i64)
        (call $abort (i32.const 260) (i32.const 276) (i32.const 7) (i32.const 9))
        (i64.const 0))
    "#;
    let (plugin, _) = load(plugin_with(&[import], &format!("{AS_STRINGS}{body}")));
    match plugin.call(Hook::PreLlm, b"{}") {
        Err(WasmError::Trap(message)) => assert_eq!(message, "abort: boom at a.ts:7:9"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn assemblyscript_trace_logs_and_seed_is_random() {
    let imports = [
        r#"(import "env" "trace" (func $trace (param i32 i32 f64 f64 f64 f64 f64)))"#,
        r#"(import "env" "seed" (func $seed (result f64)))"#,
    ];
    let body = r#"
      (func (export "pre_hook") (param i32 i32) (result i64)
        (call $trace (i32.const 260) (i32.const 2)
          (f64.const 1.5) (f64.const 2) (f64.const 0) (f64.const 0) (f64.const 0))
        (call $digits (i32.const 1024) (f64.ne (call $seed) (call $seed)))
        (call $reply (i32.const 1024) (i32.const 2)))
    "#;
    let (plugin, logs) = load(plugin_with(&imports, &format!("{AS_STRINGS}{body}")));
    assert_eq!(plugin.call(Hook::PreLlm, b"{}").unwrap(), b"01");
    assert_eq!(logs.count("trace: boom 1.5, 2"), 1, "{:?}", logs.lines());
}

// ---------------------------------------------------------------------------------------------
// Pool and lifecycle.

#[test]
fn eight_threads_share_four_instances() {
    let echo = r#"
      (func (export "pre_hook") (param i32 i32) (result i64) (call $echo (local.get 0) (local.get 1)))
    "#;
    let limits = WasmLimits {
        max_instances: 4,
        ..WasmLimits::default()
    };
    let (plugin, logs) = try_load(
        module(&[ENV_LOG], &[ALLOC, FREE_SIZED, NAME, INIT_LOGGED, echo]),
        limits,
    )
    .unwrap();
    let plugin = Arc::new(plugin);
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let plugin = Arc::clone(&plugin);
            thread::spawn(move || {
                for i in 0..1000 {
                    let input = format!(
                        r#"{{"thread":{t},"call":{i},"pad":"{}"}}"#,
                        "x".repeat(i % 97)
                    );
                    let output = plugin.call(Hook::PreLlm, input.as_bytes()).unwrap();
                    assert_eq!(output, input.as_bytes());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let instances = logs.count("init");
    assert!(
        (1..=4).contains(&instances),
        "{instances} instances started"
    );
}

#[test]
fn cleanup_runs_on_every_instance_and_later_calls_start_fresh() {
    let body = r#"
      (data (i32.const 300) "cleanup")
      (func (export "cleanup") (result i32) (call $log (i32.const 300) (i32.const 7)) (i32.const 0))
      (func (export "pre_hook") (param i32 i32) (result i64) (call $echo (local.get 0) (local.get 1)))
    "#;
    let (plugin, logs) = load(module(
        &[ENV_LOG],
        &[ALLOC, FREE_SIZED, NAME, INIT_LOGGED, body],
    ));
    assert_eq!(plugin.call(Hook::PreLlm, b"{}").unwrap(), b"{}");
    plugin.cleanup().unwrap();
    assert_eq!(logs.count("cleanup"), logs.count("init"));
    assert_eq!(plugin.call(Hook::PreLlm, b"{}").unwrap(), b"{}");
    assert_eq!(logs.count("init"), 2, "a new instance after cleanup");
}

#[test]
fn cleanup_while_calls_are_running_collects_every_instance() {
    let body = r#"
      (data (i32.const 300) "cleanup")
      (func (export "cleanup") (result i32) (call $log (i32.const 300) (i32.const 7)) (i32.const 0))
      (func (export "pre_hook") (param i32 i32) (result i64) (call $echo (local.get 0) (local.get 1)))
    "#;
    let (plugin, logs) = load(module(
        &[ENV_LOG],
        &[ALLOC, FREE_SIZED, NAME, INIT_LOGGED, body],
    ));
    let plugin = Arc::new(plugin);
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let plugin = Arc::clone(&plugin);
            thread::spawn(move || {
                for i in 0..300 {
                    let input = format!("{t}-{i}");
                    assert_eq!(
                        plugin.call(Hook::PreLlm, input.as_bytes()).unwrap(),
                        input.as_bytes()
                    );
                }
            })
        })
        .collect();
    for _ in 0..5 {
        thread::sleep(Duration::from_millis(2));
        plugin.cleanup().unwrap();
    }
    for worker in workers {
        worker.join().unwrap();
    }
    plugin.cleanup().unwrap();
    // Every instance ever started was cleaned up exactly once.
    assert_eq!(logs.count("cleanup"), logs.count("init"));
}

#[test]
fn cleanup_reports_a_non_zero_status() {
    let body = r#"(func (export "cleanup") (result i32) (i32.const 4))"#;
    let (plugin, _) = load(plugin_with(&[], body));
    assert_eq!(
        plugin.cleanup(),
        Err(WasmError::Cleanup("cleanup returned 4".into()))
    );
}

#[test]
fn cleanup_without_the_export_just_drops_instances() {
    let (plugin, _) = load(ModuleSource::Path(fixture("echo.wat")));
    plugin.cleanup().unwrap();
    assert_eq!(plugin.call(Hook::PreLlm, b"{}").unwrap(), b"{}");
}

#[test]
fn plugin_and_host_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<WasmPlugin>();
    assert_send_sync::<WasmHost>();
    assert_send_sync::<WasmError>();
}
