//! The shared test helpers, `common::` in every flat test: [`bazaar::testkit::harness`], where
//! they live so that the directory tests (`tests/NAME/main.rs`, which cannot reach this
//! module) and the benches use the same ones.
//!
//! Caveats: nothing of its own; add helpers to the harness, not here.

#![allow(unused_imports)]

pub use bazaar::testkit::harness::*;
