//! (being written) The order replica service.
