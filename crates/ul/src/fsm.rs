//! Upper Layer state machine (PS3.8 §9.2). Being written.
