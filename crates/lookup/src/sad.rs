//! Inbound SA directory (being written).
