//! Stock Bazaar (being written).

pub mod api;
pub mod config;
pub mod election;
pub mod error;
pub mod http;
