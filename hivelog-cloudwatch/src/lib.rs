//! hivelog sink for cloudwatch (not implemented yet).
