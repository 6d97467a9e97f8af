//! Admin CLI (in progress).
