//! espada-config (being written).
