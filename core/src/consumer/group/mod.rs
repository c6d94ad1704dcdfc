//! Consumer groups: the classic protocol's assignors (and, to come, the member machines for
//! the classic and KIP-848 protocols).

pub mod assignor;
pub(crate) mod classic;
