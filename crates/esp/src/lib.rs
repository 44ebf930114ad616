//! espada-esp (being written).
