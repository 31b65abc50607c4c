//! (being written) The LRU cache.
