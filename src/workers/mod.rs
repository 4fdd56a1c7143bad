//! Many warren processes running one scenario together (for example the pods of a
//! Kubernetes Indexed Job): which share of the scenario each worker runs, the run id they
//! share, their raw results, and how `warren merge` puts those results back into one run.
//! The split itself is [`crate::share`].

pub mod folders;
pub mod merge;
pub mod results;
