//! `warren validate`: checks scenario files and reports every problem of every file.

use crate::cli::ValidateArgs;
use crate::exit::Exit;
use crate::scenario::{self, Overrides};

/// Checks each file; exit 0 when all are valid, 2 otherwise.
pub fn validate(args: &ValidateArgs) -> Exit {
    let mut valid = 0;
    for path in &args.scenarios {
        match scenario::load(path, Overrides::default()) {
            Ok(plan) => {
                valid += 1;
                crate::say!("{}: ok ({})", path.display(), plan.name);
                for warning in &plan.warnings {
                    eprintln!("warning: {warning}");
                }
            }
            Err(error) => eprintln!("{error}"),
        }
    }
    let total = args.scenarios.len();
    if valid == total {
        Exit::Success
    } else {
        eprintln!("{} of {total} scenario files have problems", total - valid);
        Exit::BadInput
    }
}
