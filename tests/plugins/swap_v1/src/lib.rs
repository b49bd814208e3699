const VERSION: &str = "1.0.0";
const ONLY_UID: &str = "swap-only-v1";
include!("../../swap_common.rs");
