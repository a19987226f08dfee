//! `coordinator info`: machine facts and the worker a run would use.

use serde_json::Value as Json;

use crate::common::{assert_contains, assert_exit, coordinator, output, stdout, WORKER};

#[test]
fn info_prints_the_worker_path() {
    let out = output(coordinator().arg("info"));
    assert_exit(&out, 0);
    assert_contains(&stdout(&out), WORKER, "info");
}

#[test]
fn info_json_is_valid() {
    let out = output(coordinator().args(["info", "--json"]));
    assert_exit(&out, 0);
    let info: Json = serde_json::from_str(&stdout(&out)).expect("info --json is not JSON");
    let cores = info["machine"]["logical_cores"].as_u64();
    assert!(cores.is_some_and(|n| n >= 1), "logical_cores: {info}");
    assert_eq!(info["worker"]["path"], WORKER, "{info}");
}
