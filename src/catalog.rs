//! (being written) The catalog service.
