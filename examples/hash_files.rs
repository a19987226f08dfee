//! Hashes every file under a directory on a pool: reading is I/O, hashing is CPU, and a
//! file that cannot be read fails its own task only.
//!
//!     cargo run --release --example hash_files -- --backend process --dir src
//!
//! Prints one line per file (in input order) and exits 0 when every file was hashed.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use serde::{Deserialize, Serialize};
use workpool::{Attempt, ErrorKind, Task, TaskError, Worker};

/// The task: hash one file. It needs no settings, so the type is empty.
#[derive(Serialize, Deserialize)]
struct HashFile;

impl Task for HashFile {
    const NAME: &'static str = "hash-file";
    type Input = PathBuf;
    type Output = Digest;

    fn run(&self, path: &PathBuf, _: &Attempt) -> Result<Digest, TaskError> {
        hash(path)
            .map_err(|err| TaskError::new(ErrorKind::Io, format!("{}: {err}", path.display())))
    }
}

/// What hashing a file gives.
#[derive(Debug, Serialize, Deserialize)]
struct Digest {
    bytes: u64,
    /// FNV-1a, 64 bits: enough to tell files apart here, and no dependency.
    fnv1a: u64,
}

/// FNV-1a of a file's bytes, read in blocks.
fn hash(path: &Path) -> std::io::Result<Digest> {
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let (mut bytes, mut state) = (0u64, 0xcbf2_9ce4_8422_2325u64);
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(Digest {
                bytes,
                fnv1a: state,
            });
        }
        bytes += n as u64;
        for &b in &buffer[..n] {
            state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    backend: common::Backend,
    /// The directory whose files to hash (recursively; hidden entries and `target` skipped).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

/// Every regular file under `dir`, depth first, in name order.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || name == "target" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files_under(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<ExitCode> {
    // Started by the pool as one of its workers, this program serves there and exits.
    Worker::new().task::<HashFile>().serve_if_worker();

    let args = Args::parse();
    let mut files = Vec::new();
    files_under(&args.dir, &mut files)?;
    let (builder, _local) = args.backend.builder()?;
    let mut pool = builder.build(HashFile)?;
    let mut failed = 0;
    for record in pool.map(files) {
        match record.result {
            Ok(digest) => println!(
                "{:016x} {:>10} {}",
                digest.fnv1a,
                digest.bytes,
                record.input.display()
            ),
            Err(err) => {
                failed += 1;
                eprintln!("{}: {err}", record.input.display());
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
