//! Whether `kubernetes-validate` (PyPI) can run, for the tests that check manifests with it:
//! without it a test is skipped, except under CI (`CI` set), where it fails.

use std::process::Command;

/// True when the validator runs; false (after saying so) when a test should skip.
pub fn available() -> bool {
    let present = Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "kubernetes-validate is missing under CI: python3 -m pip install kubernetes-validate"
        );
        eprintln!("skipped: kubernetes-validate is not installed (python3 -m pip install kubernetes-validate)");
    }
    present
}
