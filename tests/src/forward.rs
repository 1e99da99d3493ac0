//! Forward protocol v1 receiver (being written).
