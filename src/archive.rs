//! Template archives (in progress).
