//! The `files` workload against hostile inputs: special files, files without line breaks,
//! an output path that is an input, file names that are not UTF-8 or hold control
//! characters, Yahoo Finance downloads, and paths that do not exist.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::common::{
    assert_contains, assert_exit, assert_usage_error, coordinator, output, parse_jsonl, stderr,
    stdout, Run,
};

/// A small valid price file.
const GOOD: &[u8] = b"date,close,volume\n\
    2020-01-01,100,1000\n\
    2020-01-02,110,2000\n\
    2020-01-03,99,3000\n\
    2020-01-04,108.9,6000\n";

/// `coordinator run files PATHS... ARGS --format jsonl`, whatever its exit code.
fn run_files(paths: &[&Path], args: &[&str]) -> std::process::Output {
    output(
        coordinator()
            .args(["run", "files"])
            .args(paths)
            .args(args)
            .args(["--format", "jsonl"]),
    )
}

/// A run expected to end with some task failed (exit 1), parsed.
#[track_caller]
fn failing(out: &std::process::Output) -> Run {
    assert_exit(out, 1);
    parse_jsonl(&stdout(out))
}

#[track_caller]
fn assert_failed(record: &Json, kind: &str, needles: &[&str]) {
    assert_eq!(record["ok"], false, "{record}");
    assert_eq!(record["error"]["kind"], kind, "{record}");
    let message = record["error"]["message"].as_str().unwrap_or_default();
    for needle in needles {
        assert_contains(message, needle, "the error message");
    }
}

fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// The peak resident set of the coordinator and every worker it reaped, in KiB, from
/// `/usr/bin/time -v` (wait4's rusage covers waited-for descendants).
fn peak_rss_kib(time_stderr: &str) -> u64 {
    time_stderr
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in:\n{time_stderr}"))
}

#[test]
fn fifo_and_devices_are_their_own_io_errors_and_never_block() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("PIPE.csv");
    mkfifo(&fifo);
    let zero = dir.path().join("ZERO.csv");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let good = dir.path().join("GOOD.csv");
    fs::write(&good, GOOD).unwrap();
    // Nobody ever writes to the FIFO: a blocking open would hang until the hang guard.
    let paths = [fifo.as_path(), &zero, Path::new("/dev/zero"), &good];
    for backend in ["process", "thread"] {
        let run = failing(&run_files(&paths, &["--backend", backend, "-w", "2"]));
        assert_failed(
            &run.records[0],
            "io",
            &["PIPE.csv", "FIFO", "not a regular file"],
        );
        assert_failed(&run.records[1], "io", &["ZERO.csv", "character device"]);
        assert_failed(&run.records[2], "io", &["/dev/zero", "character device"]);
        assert_eq!(run.records[3]["ok"], true, "{}", run.records[3]);
    }
}

#[test]
fn huge_files_end_as_their_own_parse_errors_with_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // 2 GiB of zero bytes that take no disk space: no line break anywhere.
    let sparse = dir.path().join("SPARSE.csv");
    fs::File::create(&sparse)
        .and_then(|f| f.set_len(2 << 30))
        .unwrap();
    // A 16 MiB field: once quoted whole in an error message, it broke the frame.
    let mut wide = b"date,close,volume\n2020-01-01,".to_vec();
    wide.resize(wide.len() + (16 << 20), b'1');
    wide.extend_from_slice(b",5\n2020-01-02,1,1\n2020-01-03,1,1\n");
    let field = dir.path().join("FIELD.csv");
    fs::write(&field, wide).unwrap();
    let good = dir.path().join("GOOD.csv");
    fs::write(&good, GOOD).unwrap();
    for backend in ["process", "thread"] {
        // One batch of three: the good file shares it with the two bad ones.
        let out = output(
            assert_cmd::Command::new("/usr/bin/time")
                .timeout(std::time::Duration::from_secs(120))
                .arg("-v")
                .arg(crate::common::COORDINATOR)
                .env("WORKPOOL_WORKER", crate::common::WORKER)
                .args(["run", "files"])
                .args([&sparse, &field, &good])
                .args(["--backend", backend, "-w", "1", "--chunk", "3"])
                .args(["--format", "jsonl"]),
        );
        let run = failing(&out);
        assert_failed(
            &run.records[0],
            "parse",
            &["SPARSE.csv", "line 1", "longer than 1 MiB"],
        );
        assert_failed(
            &run.records[1],
            "parse",
            &["FIELD.csv", "line 2", "longer than 1 MiB"],
        );
        assert_eq!(run.records[2]["ok"], true, "{}", run.records[2]);
        for record in &run.records[..2] {
            let message = record["error"]["message"].as_str().unwrap();
            assert!(message.len() < 1000, "{} bytes", message.len());
        }
        let peak = peak_rss_kib(&stderr(&out));
        assert!(
            peak < 256 * 1024,
            "{backend}: peak RSS {peak} KiB, expected far below the files' sizes"
        );
    }
}

#[test]
fn output_that_is_an_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    let input = data.join("AAPL.csv");
    fs::write(&input, GOOD).unwrap();
    let link = dir.path().join("link.csv");
    fs::hard_link(&input, &link).unwrap();
    for output_path in [&input, &link] {
        let out = output(
            coordinator()
                .args(["run", "files"])
                .arg(&data)
                .arg("-o")
                .arg(output_path),
        );
        assert_usage_error(
            &out,
            &[
                "--output",
                &output_path.display().to_string(),
                "AAPL.csv",
                "input",
            ],
        );
        assert_eq!(fs::read(&input).unwrap(), GOOD, "the input was damaged");
    }
    // Another existing file is overwritten as before.
    let other = dir.path().join("out.jsonl");
    fs::write(
        &other,
        "old content that is longer than the new output ".repeat(100),
    )
    .unwrap();
    let out = output(
        coordinator()
            .args(["run", "files"])
            .arg(&data)
            .args(["--format", "jsonl", "-o"])
            .arg(&other),
    );
    assert_exit(&out, 0);
    let run = parse_jsonl(&fs::read_to_string(&other).unwrap());
    assert_eq!(run.records.len(), 1);
}

#[test]
fn non_utf8_file_name_is_read_and_shown_lossily() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(OsStr::from_bytes(b"\xff\xfe.csv"));
    fs::write(&path, GOOD).unwrap();
    // Named directly on the command line, and found by listing its directory.
    for arg in [path.as_path(), dir.path()] {
        let out = run_files(&[arg], &[]);
        assert_exit(&out, 0);
        let run = parse_jsonl(&stdout(&out));
        let record = &run.records[0];
        assert_eq!(record["ok"], true, "{record}");
        assert_contains(
            record["input"].as_str().unwrap(),
            "\u{fffd}\u{fffd}.csv",
            "the input",
        );
        assert_eq!(record["value"]["ticker"], "\u{fffd}\u{fffd}");
        assert_eq!(record["value"]["rows"], 4);
    }
}

#[test]
fn table_escapes_control_characters_in_every_cell() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("a\x1b[31mRED\nx.csv");
    fs::write(&good, GOOD).unwrap();
    let bad = dir.path().join("b\x1b]0;title\x07\r.csv");
    fs::write(&bad, b"date,close,volume\n").unwrap();
    let out = output(
        coordinator()
            .args(["run", "files"])
            .args([&good, &bad])
            .args(["--format", "table", "--progress", "never"]),
    );
    assert_exit(&out, 1);
    let table = stdout(&out);
    assert!(
        !table.contains(['\x1b', '\x07', '\r']),
        "raw control characters in:\n{table:?}"
    );
    // Input and error message cells alike (the ticker, which repeats the file's name,
    // is not a column of the table).
    assert_contains(&table, "a\\u{1b}[31mRED\\nx.csv", "the table");
    assert_contains(
        &table,
        "b\\u{1b}]0;title\\u{7}\\r.csv: header only",
        "the table",
    );
    // One line per row: a header, two records, then the summary grid.
    let rows = table.lines().take_while(|line| !line.is_empty()).count();
    assert_eq!(rows, 3, "{table}");
}

/// A Yahoo Finance download: capitalised names, `Adj Close`, a `null` row.
const YAHOO: &[u8] = b"Date,Open,High,Low,Close,Adj Close,Volume\n\
    2024-01-02,187.15,188.44,183.89,185.64,184.73,82488700\n\
    2024-01-03,184.22,185.88,183.43,184.25,183.35,58414500\n\
    2024-01-04,182.15,183.09,180.88,181.91,181.02,71983600\n\
    2024-01-05,null,null,null,null,null,null\n\
    2024-01-08,182.09,185.60,181.50,185.56,184.65,59144500\n\
    2024-01-09,183.92,185.15,182.73,185.14,184.23,42841800\n";

/// The rows of YAHOO that have every value, with only the columns the statistics use.
fn kept_rows(price_name: &str, price: usize) -> String {
    let text = std::str::from_utf8(YAHOO).expect("ASCII");
    let mut kept = format!("date,{price_name},volume\n");
    for line in text.lines().skip(1).filter(|l| !l.contains("null")) {
        let fields: Vec<&str> = line.split(',').collect();
        kept.push_str(&format!("{},{},{}\n", fields[0], fields[price], fields[6]));
    }
    kept
}

#[test]
fn yahoo_download_with_null_rows() {
    let dir = tempfile::tempdir().unwrap();
    let yahoo = dir.path().join("AAPL.csv");
    fs::write(&yahoo, YAHOO).unwrap();

    // By default a missing price is the file's error, naming where.
    let run = failing(&run_files(&[&yahoo], &[]));
    assert_failed(
        &run.records[0],
        "parse",
        &["line 5", "column 5 \"Close\"", "\"null\"", "--missing skip"],
    );

    for (flag, index) in [("Close", 4), ("Adj Close", 5)] {
        let kept = dir.path().join(format!("KEPT{index}.csv"));
        fs::write(&kept, kept_rows(flag, index)).unwrap();
        let out = run_files(
            &[&yahoo, &kept],
            &["--missing", "skip", "--price-column", flag],
        );
        assert_exit(&out, 0);
        let run = parse_jsonl(&stdout(&out));
        let (got, want) = (&run.records[0]["value"], &run.records[1]["value"]);
        assert_eq!(got["skipped_rows"], 1, "{got}");
        assert_eq!(want["skipped_rows"], 0, "{want}");
        assert_eq!(got["rows"], 5, "{got}");
        for key in crate::common::FILE_STATS {
            assert_eq!(got[key], want[key], "{key} with --price-column {flag}");
        }
    }

    let out = output(coordinator().args(["run", "files", "--help"]));
    assert_exit(&out, 0);
    for needle in [
        "volume",
        "--price-column",
        "--missing",
        "ignoring case",
        "1 MiB",
    ] {
        assert_contains(&stdout(&out), needle, "run files --help");
    }
}

#[test]
fn path_that_does_not_exist_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("GOOD.csv");
    fs::write(&good, GOOD).unwrap();
    let missing: PathBuf = dir.path().join("nosuchdir");
    for paths in [vec![missing.as_path()], vec![good.as_path(), &missing]] {
        let out = run_files(&paths, &[]);
        assert_usage_error(&out, &["nosuchdir", "no such file or directory"]);
        assert_eq!(stdout(&out), "", "no task may run");
    }
}
