//! A panic that unwinds out of `main` still flushes the buffered log lines.
//!
//! Its own test binary, because it installs the global logger: the test
//! runs itself again as a child process that sets logging up as the pulse
//! binary does, logs, and panics with a `FlushOnDrop` on its stack; the
//! parent reads the child's real stdout.

use std::process::Command;
use std::time::Duration;

const CHILD: &str = "PULSE_PANIC_FLUSH_CHILD";

#[test]
fn a_panic_unwinding_out_of_main_still_flushes_the_log() {
    if std::env::var_os(CHILD).is_some() {
        pulse::logging::init("info", pulse::LogFormat::Text).expect("logger");
        pulse::logging::log_panics();
        let _flush = pulse::logging::FlushOnDrop(Duration::from_secs(2));
        log::info!("logged just before the panic");
        panic!("unwinding out of main");
    }
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_panic_unwinding_out_of_main_still_flushes_the_log",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .expect("run the child");
    assert!(!output.status.success(), "the child did not panic");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Without the flush on unwinding these lines wait for the writer's next
    // round (up to 100 ms), and the process is gone by then.
    assert!(stdout.contains("logged just before the panic"), "{stdout}");
    assert!(
        stdout.contains("pulse::panic") && stdout.contains("panicked: unwinding out of main"),
        "{stdout}"
    );
}
