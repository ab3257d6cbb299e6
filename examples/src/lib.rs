//! Examples of the docraft crates: see `examples/*.rs`.
