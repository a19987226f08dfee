//! How a worker settles what it finished: several task entries per script call, of any
//! runs, each entry's outcomes out (while its run is live) and every entry acknowledged and
//! deleted together.

use workpool::broker::{self, BrokerUrl, Finished, TASKS_STREAM};

use super::fixtures::*;

/// Three entries taken by one worker, settled in one call: the live run gets its one
/// outcome entry (with a TTL), the run that is gone gets no results stream, the entry with
/// nothing to publish is only acknowledged, and none of the three is left in the stream.
#[test]
fn several_finished_entries_settle_in_one_call() {
    let server = RedisServer::start();
    let url = BrokerUrl::parse(&server.url()).expect("broker URL");
    let mut con = connect(&server.url());
    broker::ensure_group(&url, &mut con).expect("group");
    let ids: Vec<String> = (0..3)
        .map(|i| {
            redis::cmd("XADD")
                .arg(TASKS_STREAM)
                .arg("*")
                .arg("f")
                .arg(format!("batch {i}"))
                .query(&mut con)
                .expect("XADD")
        })
        .collect();
    take_unacknowledged(&mut con, "w");
    assert_eq!(pending(&mut con), 3);
    let _: () = redis::cmd("SET")
        .arg(broker::spec_key("live"))
        .arg("settings")
        .query(&mut con)
        .expect("SET");

    let done = [
        Finished {
            run: "live",
            id: &ids[0],
            frame: b"outcomes",
        },
        Finished {
            run: "gone",
            id: &ids[1],
            frame: b"late outcomes",
        },
        Finished {
            run: "live",
            id: &ids[2],
            frame: b"",
        },
    ];
    broker::finish_many(&url, &mut con, &done).expect("finish");

    assert_eq!(pending(&mut con), 0, "every entry is acknowledged");
    assert_eq!(tasks_queued(&mut con), 0, "every entry is deleted");
    let results: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(broker::results_key("live"))
        .arg("-")
        .arg("+")
        .query(&mut con)
        .expect("XRANGE");
    let frames: Vec<Vec<u8>> = results
        .ids
        .iter()
        .map(|entry| entry.get("f").expect("field f"))
        .collect();
    assert_eq!(frames, vec![b"outcomes".to_vec()]);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(broker::results_key("live"))
        .query(&mut con)
        .expect("PTTL");
    assert!(ttl > 0, "the results stream expires (PTTL {ttl})");
    let gone: i64 = redis::cmd("EXISTS")
        .arg(broker::results_key("gone"))
        .query(&mut con)
        .expect("EXISTS");
    assert_eq!(gone, 0, "nothing is published for a run that is gone");
}
