//! hivelog sink for fluent (not implemented yet).
