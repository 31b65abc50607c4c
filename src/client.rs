//! (being written) The load-generating client.
