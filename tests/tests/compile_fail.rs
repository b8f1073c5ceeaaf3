//! Every compile error the macros promise, with its message snapshot in `tests/ui/*.stderr`.
//! Refresh the snapshots after an intended change with `TRYBUILD=overwrite`.

#[test]
fn compile_errors_read_like_advice() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/*.rs");
}
