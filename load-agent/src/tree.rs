//! Files a configuration names stay inside the folder they belong to (an experiment's apps, scenarios or baselines
//! folder, a scenario's own folder): a `..` out of it, an absolute path elsewhere or a symbolic link pointing out
//! would let a shared matrix or scenario read any file the user can read, and show parts of it in errors.

use std::path::{Path, PathBuf};

/// Where a named file is, once symbolic links are followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// A regular file under the folder: its real path.
    File(PathBuf),
    /// Nothing readable there (or not a regular file).
    Missing,
    /// It exists, and its real path is not under the folder's real path.
    Outside,
}

/// Finds `file` and checks that it lies under `folder`, comparing real (canonical) paths.
pub fn locate(folder: &Path, file: &Path) -> Located {
    let Ok(real) = file.canonicalize() else { return Located::Missing };
    let folder = if folder.as_os_str().is_empty() { Path::new(".") } else { folder };
    // A folder that does not resolve holds nothing: whatever `file` resolved to is outside it.
    match folder.canonicalize() {
        Ok(root) if real.starts_with(&root) => {
            if real.is_file() {
                Located::File(real)
            } else {
                Located::Missing
            }
        }
        _ => Located::Outside,
    }
}

/// The error message for a `reference` (as written) that resolves outside `folder`.
pub fn leaves(reference: &str, folder: &Path) -> String {
    format!(
        "{reference:?} leaves {}: the files named here must stay inside that folder (no '..' out of it, no \
         absolute path elsewhere, no symbolic link pointing out)",
        folder.display()
    )
}

/// The folder a file is in ("." for a bare file name), the tree a file names others from by default.
pub fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_under_the_folder_are_found_and_others_are_outside() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a")).unwrap();
        std::fs::write(tree.join("a/in.yaml"), "x").unwrap();
        std::fs::write(dir.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), tree.join("link")).unwrap();
        std::os::unix::fs::symlink(tree.join("a/in.yaml"), tree.join("inner-link")).unwrap();

        assert!(matches!(locate(&tree, &tree.join("a/../a/in.yaml")), Located::File(_)));
        assert!(matches!(locate(&tree, &tree.join("inner-link")), Located::File(_)));
        assert_eq!(locate(&tree, &tree.join("a/../../secret")), Located::Outside);
        assert_eq!(locate(&tree, &tree.join("link")), Located::Outside);
        assert_eq!(locate(&tree, &dir.path().join("secret")), Located::Outside);
        assert_eq!(locate(&tree, &tree.join("a/missing.yaml")), Located::Missing);
        assert_eq!(locate(&tree, &tree.join("a")), Located::Missing, "a folder is not a file");
        assert_eq!(locate(&dir.path().join("no-such-folder"), &dir.path().join("secret")), Located::Outside);
    }

    #[test]
    fn a_bare_file_name_is_in_the_current_folder() {
        assert_eq!(folder_of(Path::new("t.yaml")), PathBuf::from("."));
        assert_eq!(folder_of(Path::new("s/t.yaml")), PathBuf::from("s"));
    }
}
