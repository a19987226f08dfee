//! The integration tests: one binary (it builds faster than many) that drives the real
//! `coordinator` and `worker` executables, plus the wire protocol played from the
//! coordinator's side.

mod common;

mod bench;
mod broker;
mod chaos;
mod cleanup;
mod errors;
mod examples;
mod exports;
mod faults;
mod files;
mod info;
mod limits;
mod order;
mod protocol;
mod recycle;
mod results;
mod script;
mod stopping;
mod streams;
mod workloads;
mod zygote;
