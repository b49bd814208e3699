const VERSION: &str = "2.0.0";
const ONLY_UID: &str = "swap-only-v2";
include!("../../swap_common.rs");
