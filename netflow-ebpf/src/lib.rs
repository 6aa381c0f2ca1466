#![no_std]
// Library target so that netflow-user can list this crate as a build dependency.
