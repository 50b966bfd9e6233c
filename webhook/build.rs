// The commit this binary was built from, for `--version`: the same script as module-builder's.
include!("../action/build.rs");
