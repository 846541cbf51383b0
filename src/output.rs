//! Output files other than the database: checked before the work that fills them, and
//! written through a temporary file that is renamed into place only when complete.

use std::path::{Path, PathBuf};

/// Errors with an output path.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("`{path}` exists but is not a regular file, so it is left untouched\nhint: pass the path of a file to write")]
    NotRegularFile { path: PathBuf },
    #[error("the directory of `{path}` does not exist\nhint: create it first")]
    MissingDirectory { path: PathBuf },
    #[error("`{path}` exists but is not a directory\nhint: pass a directory for the outputs")]
    NotADirectory { path: PathBuf },
    #[error("cannot write `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing was interrupted; `{path}` is unchanged")]
    Interrupted { path: PathBuf },
}

/// Checks that `path` can be written as a file and returns the file to write: `path`
/// itself, or the file a symbolic link at `path` points to.
pub fn check_file(path: &Path) -> Result<PathBuf, OutputError> {
    let resolved = if path.is_symlink() {
        let target = std::fs::read_link(path).map_err(|source| OutputError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        match path.parent() {
            Some(parent) if target.is_relative() => parent.join(target),
            _ => target,
        }
    } else {
        path.to_path_buf()
    };
    if let Ok(metadata) = std::fs::metadata(&resolved) {
        if !metadata.is_file() {
            return Err(OutputError::NotRegularFile {
                path: path.to_path_buf(),
            });
        }
    }
    let directory = directory_of(&resolved);
    if !directory.is_dir() {
        return Err(OutputError::MissingDirectory {
            path: path.to_path_buf(),
        });
    }
    Ok(resolved)
}

/// Creates the output directory `path` with its parents, or checks that it is one.
pub fn ensure_directory(path: &Path) -> Result<(), OutputError> {
    if path.exists() && !path.is_dir() {
        return Err(OutputError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    std::fs::create_dir_all(path).map_err(|source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// A complete file waiting beside its target to be renamed into place.
pub struct Staged {
    temporary: tempfile::NamedTempFile,
    target: PathBuf,
    path: PathBuf,
}

/// Writes a file beside `path` (checked by [`check_file`]) with mode 0644, and returns it
/// staged for [`Staged::publish`]. A second Ctrl-C meanwhile removes it.
pub fn stage(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<()>,
) -> Result<Staged, OutputError> {
    use std::io::Write;
    let target = check_file(path)?;
    let io = |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let temporary = tempfile::Builder::new()
        .prefix(".placewise-")
        .suffix(".partial")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(directory_of(&target))
        .map_err(io)?;
    crate::interrupt::set_partial(Some(temporary.path().to_path_buf()));
    {
        let mut out = std::io::BufWriter::new(temporary.as_file());
        write(&mut out).map_err(io)?;
        out.flush().map_err(io)?;
    }
    temporary.as_file().sync_all().map_err(io)?;
    Ok(Staged {
        temporary,
        target,
        path: path.to_path_buf(),
    })
}

impl Staged {
    /// Renames the file into place.
    pub fn publish(self) -> Result<(), OutputError> {
        let result = self.temporary.persist(&self.target);
        crate::interrupt::set_partial(None);
        result.map(|_| ()).map_err(|e| OutputError::Io {
            path: self.path,
            source: e.error,
        })
    }
}

/// Writes `path` completely or not at all.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<()>,
) -> Result<(), OutputError> {
    stage(path, write)?.publish()
}
