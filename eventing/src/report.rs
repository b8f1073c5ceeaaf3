//! How errors that a `main` may return show themselves in `Debug`, as `anyhow` does: the
//! message, then the causes it does not already say.

use std::fmt;

/// Writes `error` as a `main` that returns it should show it: the message, then under
/// `Caused by:` each source whose text the lines above do not already contain (our
/// messages often end with their source's text; it is not repeated).
pub(crate) fn report(error: &(dyn std::error::Error + 'static), f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut shown = error.to_string();
    f.write_str(&shown)?;
    let mut causes = Vec::new();
    for cause in std::iter::successors(error.source(), |cause| cause.source()) {
        let text = cause.to_string();
        if !shown.contains(&text) {
            shown.push('\n');
            shown.push_str(&text);
            causes.push(text);
        }
    }
    match causes.as_slice() {
        [] => Ok(()),
        [cause] => write!(f, "\n\nCaused by:\n    {cause}"),
        causes => {
            f.write_str("\n\nCaused by:")?;
            causes.iter().enumerate().try_for_each(|(n, cause)| write!(f, "\n    {n}: {cause}"))
        }
    }
}
