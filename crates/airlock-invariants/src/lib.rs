//! Empty: this package holds `tests/invariants.rs`, the bounded exhaustive exploration and the seeded simulation of
//! the state machine. It is a package of its own so that the harness (cloning and hashing hundreds of thousands of
//! case states) is built optimised in tests without optimising the whole of airlock (issue 21, item 5).
