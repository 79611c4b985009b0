//! Helpers shared by the cross-adapter, hostile-peer, fault and soak tests in `tests/`.
