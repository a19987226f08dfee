//! `run-tests.sh`, the repository's test command: it parses, and on a machine without
//! apt-get it names the packages the tests need instead of trying to install them.

use std::path::Path;
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/run-tests.sh");

#[test]
fn the_test_script_parses() {
    let out = Command::new("bash").args(["-n", SCRIPT]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With a PATH that has none of the tools (nor apt-get), the script stops at once with
/// one line naming every package, and a failure exit code.
#[test]
fn without_apt_get_the_script_names_the_packages_and_fails() {
    let bin = tempfile::tempdir().unwrap();
    // Only what the script needs before its check: `dirname`.
    let dirname = ["/usr/bin/dirname", "/bin/dirname"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("dirname");
    std::os::unix::fs::symlink(dirname, bin.path().join("dirname")).unwrap();
    let bash = ["/usr/bin/bash", "/bin/bash"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("bash");
    let out = Command::new(bash)
        .arg(SCRIPT)
        .env("PATH", bin.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for package in ["redis-server", "iproute2", "openssl", "apt-get"] {
        assert!(stderr.contains(package), "{package} not named: {stderr}");
    }
    assert!(out.stdout.is_empty());
}

/// The README shows the library's example; docs/library.md holds the same example as a
/// doctest of the library, which proves it compiles and runs. They must not drift apart.
#[test]
fn the_readme_example_is_the_doc_tested_one() {
    fn rust_block(text: &str) -> &str {
        let start = text.find("```rust").expect("a ```rust block");
        let len = text[start + 7..].find("```").expect("the block's end");
        &text[start..start + 7 + len]
    }
    let readme = include_str!("../README.md");
    let library = include_str!("../docs/library.md");
    assert_eq!(rust_block(readme), rust_block(library));
}
