//! The proxy's view of a conversion in flight: what pgveil serves while a
//! column is on the shadow path, how a session detects it, and the window
//! after the swap. The code lives in [`crate::snapshot::overlay`] (the
//! session layer reads it, and may not import `migrate`); this name is kept
//! for the docs and tools that point here.

pub use crate::snapshot::overlay::*;
