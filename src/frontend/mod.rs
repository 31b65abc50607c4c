//! (being written) The front-end service.
pub mod cache;
