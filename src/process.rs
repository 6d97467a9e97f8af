//! The only module that spawns processes (in progress).
