//! hivelog (in progress).
