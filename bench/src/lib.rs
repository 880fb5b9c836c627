//! Benchmarks live in `benches/`; run them with `cargo xtask bench`. This library holds what
//! several of them share.

pub mod rmcp_load;
