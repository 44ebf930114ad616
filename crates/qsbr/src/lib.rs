//! espada-qsbr (being written).
