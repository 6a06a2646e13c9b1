//! The NATS client wire protocol: parsing what clients send ([`parser`]), encoding what the
//! server sends ([`encode`]), subject syntax ([`subject`]) and the JSON of INFO/CONNECT
//! ([`info`]).

pub mod encode;
pub mod info;
pub mod parser;
pub mod subject;
