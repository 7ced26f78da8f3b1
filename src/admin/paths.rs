//! Path confinement for everything an admin client names: a path is resolved inside one root
//! directory (`--models-dir`, `--data-dir`) or refused. `..`, absolute paths elsewhere and
//! symlinks whose target leaves the root are all caught the same way: by canonicalising and
//! checking the result still lies under the canonical root.

use std::path::{Component, Path, PathBuf};

/// Why a client's path was refused (each becomes a 400 naming the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty, or not valid as a path.
    #[error("`{0}` is not a usable path")]
    Invalid(String),
    /// The path does not exist (for inputs).
    #[error("`{0}` does not exist inside {1}")]
    Missing(String, String),
    /// The resolved path lies outside the root.
    #[error("`{0}` resolves outside {1}")]
    Escapes(String, String),
    /// An output that already exists (outputs are never overwritten).
    #[error("`{0}` already exists inside {1}")]
    Exists(String, String),
    /// The root itself cannot be used.
    #[error("{0} is not a usable directory")]
    Root(String),
}

fn canonical_root(root: &Path) -> Result<PathBuf, PathError> {
    root.canonicalize()
        .map_err(|_| PathError::Root(root.display().to_string()))
}

/// An existing file or directory named by `requested`, relative to `root` (or absolute), whose
/// canonical form lies inside the canonical `root`.
pub fn existing_inside(root: &Path, requested: &str) -> Result<PathBuf, PathError> {
    if requested.trim().is_empty() || requested.contains('\0') {
        return Err(PathError::Invalid(requested.to_string()));
    }
    let root = canonical_root(root)?;
    let joined = root.join(requested);
    let shown = root.display().to_string();
    let resolved = match joined.canonicalize() {
        Ok(path) => path,
        // A missing path that would escape anyway is reported as escaping.
        Err(_) if escapes_lexically(&root, &joined) => {
            return Err(PathError::Escapes(requested.to_string(), shown))
        }
        Err(_) => return Err(PathError::Missing(requested.to_string(), shown)),
    };
    if resolved.starts_with(&root) {
        Ok(resolved)
    } else {
        Err(PathError::Escapes(requested.to_string(), shown))
    }
}

/// A new directory name directly inside `root`: one plain path component, not yet present.
pub fn new_child(root: &Path, name: &str) -> Result<PathBuf, PathError> {
    let mut components = Path::new(name).components();
    let single = matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(_)), None)
    );
    let root = canonical_root(root)?;
    let shown = root.display().to_string();
    if !single {
        return Err(if name.trim().is_empty() {
            PathError::Invalid(name.to_string())
        } else {
            PathError::Escapes(name.to_string(), shown)
        });
    }
    let path = root.join(name);
    if path.symlink_metadata().is_ok() {
        return Err(PathError::Exists(name.to_string(), shown));
    }
    Ok(path)
}

/// Whether `path` (not canonicalised) leaves `root` once `.` and `..` are applied.
fn escapes_lexically(root: &Path, path: &Path) -> bool {
    let mut normal = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    !normal.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("teacher")).unwrap();
        std::fs::write(root.path().join("teacher/config.json"), "{}").unwrap();
        std::fs::write(outside.path().join("secret.jsonl"), "x").unwrap();
        (root, outside)
    }

    #[test]
    fn relative_and_absolute_paths_inside_the_root_resolve() {
        let (root, _outside) = tree();
        let canon = root.path().canonicalize().unwrap();
        assert_eq!(
            existing_inside(root.path(), "teacher").unwrap(),
            canon.join("teacher")
        );
        let absolute = canon.join("teacher/config.json");
        assert_eq!(
            existing_inside(root.path(), absolute.to_str().unwrap()).unwrap(),
            absolute
        );
        assert_eq!(
            existing_inside(root.path(), "teacher/../teacher").unwrap(),
            canon.join("teacher")
        );
    }

    #[test]
    fn dot_dot_absolute_and_symlink_escapes_are_refused() {
        let (root, outside) = tree();
        let secret = outside.path().join("secret.jsonl");
        assert!(matches!(
            existing_inside(root.path(), "../x"),
            Err(PathError::Escapes(..))
        ));
        assert!(matches!(
            existing_inside(root.path(), secret.to_str().unwrap()),
            Err(PathError::Escapes(..))
        ));
        std::os::unix::fs::symlink(&secret, root.path().join("link.jsonl")).unwrap();
        assert!(matches!(
            existing_inside(root.path(), "link.jsonl"),
            Err(PathError::Escapes(..))
        ));
        std::os::unix::fs::symlink(outside.path(), root.path().join("dir")).unwrap();
        assert!(matches!(
            existing_inside(root.path(), "dir/secret.jsonl"),
            Err(PathError::Escapes(..))
        ));
    }

    #[test]
    fn missing_and_empty_inputs_are_named() {
        let (root, _outside) = tree();
        assert!(matches!(
            existing_inside(root.path(), "nope"),
            Err(PathError::Missing(..))
        ));
        assert!(matches!(
            existing_inside(root.path(), " "),
            Err(PathError::Invalid(..))
        ));
    }

    #[test]
    fn outputs_are_one_new_component() {
        let (root, _outside) = tree();
        let canon = root.path().canonicalize().unwrap();
        assert_eq!(
            new_child(root.path(), "student").unwrap(),
            canon.join("student")
        );
        for bad in ["../student", "a/b", "/tmp/x", ".", ".."] {
            assert!(
                matches!(new_child(root.path(), bad), Err(PathError::Escapes(..))),
                "{bad}"
            );
        }
        assert!(matches!(
            new_child(root.path(), "teacher"),
            Err(PathError::Exists(..))
        ));
        assert!(matches!(
            new_child(root.path(), ""),
            Err(PathError::Invalid(..))
        ));
    }
}
