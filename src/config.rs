//! CLI definition (in progress).
