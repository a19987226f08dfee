//! An example program on the redis backend: the program starts two copies of itself as
//! broker workers (WORKPOOL_ROLE=worker), which serve its own task type.

use super::fixtures::RedisServer;
use crate::examples::{assert_flaky, run_example};

#[test]
fn flaky_on_redis_served_by_copies_of_itself() {
    let server = RedisServer::start();
    let url = server.url();
    let out = run_example(
        "flaky",
        &[
            "--backend",
            "redis",
            "--broker",
            &url,
            "--local-workers",
            "2",
            "--timeout-ms",
            "300",
        ],
    );
    assert_flaky(&out, 20, false);
}
