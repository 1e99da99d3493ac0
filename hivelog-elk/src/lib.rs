//! hivelog sink for elk (not implemented yet).
