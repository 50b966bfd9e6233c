//! Background work: the [`worker`] (claim, run, record, backoff, dead letters), the
//! reconciler ([`reconcile`]) and the singletons that run on one replica at a time
//! ([`singletons`]). What a job is (`store::Job`) and the queue itself (leases, backoff, dead
//! letters) are in `store/`, so producers and this consumer do not import each other.

pub mod dead_letters;
pub mod reconcile;
pub mod singletons;
pub mod worker;
