//! The coordinator: command line, plan, pool, reports and exports. The binary in `main.rs`
//! is a thin shell over [`app::main`]; tests and benchmarks call this library directly.

pub mod app;
pub mod bench;
pub mod builtin;
pub mod cli;
pub mod demo;
pub mod export;
pub mod gen_data;
pub mod info;
pub mod machine;
pub mod plan;

pub mod progress;
pub mod report;
