//! Stock Bazaar (being written).

pub mod api;
pub mod catalog;
pub mod client;
pub mod config;
pub mod election;
pub mod error;
pub mod frontend;
pub mod http;
pub mod order;
