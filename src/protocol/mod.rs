//! The NATS client wire protocol: parsing what clients send ([`parser`]), encoding what the
//! server sends ([`encode`]), subject syntax ([`subject`]) and the JSON of INFO/CONNECT
//! ([`info`]), and the route protocol between the servers of a cluster ([`route`]).

pub mod encode;
pub mod info;
pub mod jwt;
pub mod leaf;
pub mod parser;
pub mod route;
pub mod subject;
pub mod transform;
