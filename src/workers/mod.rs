//! Many warren processes running one scenario together (for example the pods of a
//! Kubernetes Indexed Job): each worker's raw results, and how `warren merge` puts those
//! results back into one run. Which share of the scenario each worker runs, and the run
//! id they share, are [`crate::share`].

pub mod folders;
pub mod merge;
pub mod results;
