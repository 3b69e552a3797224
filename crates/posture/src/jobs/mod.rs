//! Background work: the durable job queue and the workers that drain it.

pub mod queue;
pub mod worker;
