//! Runs the load drill (`src/load_drill.rs`) as part of the test suite: the
//! primary origin process is killed and restarted under load, and no request
//! may be lost. Cargo builds the binary with the test suite's features, so
//! this costs no second build of the dependencies.

#[test]
fn the_load_drill_loses_nothing() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_load-drill"))
        .args(["10000", "32"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run the load drill: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "the drill failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("lost = 0"), "{stdout}");
}
