// Rebuild when migrations or policies change: sqlx::migrate! and include_str! embed them.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=policies");
}
