//! Association negotiation (PS3.8 §9.3.2–9.3.4, PS3.7 Annex D). Being written.
