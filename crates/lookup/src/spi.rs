//! SPI allocation (being written).
