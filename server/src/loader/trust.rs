//! Whether a library may be loaded at all, whatever it contains: who could
//! have written it.

use std::path::Path;

use super::LoadError;

/// Like sshd's StrictModes: a library, and every folder from it up to
/// `root`, must not be writable by group or others, or anyone in them could
/// make the server run their code.
pub fn check_permissions(path: &Path, root: &Path) -> Result<(), LoadError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut current = Some(path);
        while let Some(p) = current {
            let mode = std::fs::metadata(p).map_err(LoadError::Copy)?.permissions().mode();
            if mode & 0o022 != 0 {
                let who = if mode & 0o020 != 0 { "its group" } else { "others" };
                return Err(LoadError::Insecure(format!(
                    "{} is writable by {who} (mode {:o}); run `chmod go-w {}`, or set allow_insecure_permissions = true",
                    p.display(),
                    mode & 0o777,
                    p.display()
                )));
            }
            current = if p == root {
                None
            } else {
                p.parent().filter(|parent| parent.starts_with(root))
            };
        }
    }
    #[cfg(not(unix))]
    let _ = (path, root);
    Ok(())
}
