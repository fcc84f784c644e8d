//! dimsum-net. Being written.
