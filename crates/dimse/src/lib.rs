//! DIMSE (PS3.7). Being written.
